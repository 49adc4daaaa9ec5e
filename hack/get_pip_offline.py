"""Offline stand-in for get-pip.py, used by ansible-test to put pip into the
empty virtualenvs it makes. ansible-test downloads get-pip.py from a host this
machine cannot reach; Python's own ensurepip gives the same result: pip from
the wheel bundled with Python, then the exact pip version asked for, from PyPI.

ansible-test runs it as `get_pip.py [pip options] pip==X [--no-setuptools] [--no-wheel]`.
"""

import subprocess
import sys

# In a child process: ensurepip blanks the pip configuration (PIP_CONFIG_FILE)
# of the process it runs in, and the install below needs it (CA bundle, mirrors).
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *args]))
