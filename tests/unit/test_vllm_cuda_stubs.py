"""tests/fixtures/models/vllm/cuda_stubs.py: the stubs of the CUDA libraries the vLLM CPU image maps but never calls."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "vllm" / "cuda_stubs.py"
SPEC = importlib.util.spec_from_file_location("cuda_stubs", SCRIPT)
cuda_stubs = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(cuda_stubs)

# As nm -D --defined-only prints them (binutils 2.40): libcublas's layout, and libcusparseLt's (unversioned,
# with C++ template instantiations and a unique global).
CUBLAS_NM = """\
000000000004d5f0 T cublasCreate_v2@@libcublas.so.13
0000000000000000 A libcublas.so.13
000000000004d700 T cublasDestroy_v2@@libcublas.so.13
"""
CUSPARSELT_NM = """\
00000000003e87e0 W _ZNSt13_Bvector_baseISaIbEE13_M_deallocateEv
000000000374dac0 u _ZSt19piecewise_construct
0000000000074fa0 T cusparseLtInit
0000000000075c80 W cusparseLtDestroy
"""


def test_parse_nm_keeps_the_c_functions_with_their_version() -> None:
    assert cuda_stubs.parse_nm(CUBLAS_NM) == [
        cuda_stubs.Symbol("cublasCreate_v2", "libcublas.so.13"),
        cuda_stubs.Symbol("cublasDestroy_v2", "libcublas.so.13"),
    ]


def test_parse_nm_leaves_out_cxx_symbols_and_data() -> None:
    # A stub exporting std::vector's code would interpose on every library's copy of it.
    assert cuda_stubs.parse_nm(CUSPARSELT_NM) == [
        cuda_stubs.Symbol("cusparseLtInit", None),
        cuda_stubs.Symbol("cusparseLtDestroy", None),
    ]


def test_parse_nm_refuses_a_non_default_version() -> None:
    with pytest.raises(cuda_stubs.StubError, match="cublasOld@libcublas.so.12"):
        cuda_stubs.parse_nm("0000000000001000 T cublasOld@libcublas.so.12\n")


def test_parse_soname() -> None:
    text = " 0x000000000000000e (SONAME)             Library soname: [libcublas.so.13]\n"
    assert cuda_stubs.parse_soname(text) == "libcublas.so.13"
    with pytest.raises(cuda_stubs.StubError, match="no SONAME"):
        cuda_stubs.parse_soname(" 0x0000000000000001 (NEEDED)  Shared library: [libc.so.6]\n")


def test_version_script_names_each_node_or_one_anonymous() -> None:
    assert cuda_stubs.version_script(cuda_stubs.parse_nm(CUBLAS_NM)) == (
        "libcublas.so.13 {\n  global:\n    cublasCreate_v2;\n    cublasDestroy_v2;\n  local: *;\n};\n")
    assert cuda_stubs.version_script(cuda_stubs.parse_nm(CUSPARSELT_NM)) == (
        "{\n  global:\n    cusparseLtInit;\n    cusparseLtDestroy;\n  local: *;\n};\n")
    with pytest.raises(cuda_stubs.StubError, match="versioned and unversioned"):
        cuda_stubs.version_script([cuda_stubs.Symbol("a", "V1"), cuda_stubs.Symbol("b", None)])


def test_c_source_defines_each_symbol_by_its_asm_name() -> None:
    source = cuda_stubs.c_source("libcublas.so.13", cuda_stubs.parse_nm(CUBLAS_NM))
    assert 'void stub_0(void) __asm__("cublasCreate_v2");' in source
    assert 'void stub_1(void) { called("cublasDestroy_v2"); }' in source
    assert "libcublas.so.13 is a stub" in source and "abort();" in source


@pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("nm") and shutil.which("readelf")),
                    reason="gcc and binutils are not installed")
def test_a_stub_loads_in_place_of_the_library_and_a_call_aborts_naming_it(tmp_path: Path) -> None:
    # A real library with a version node, a program linked against it, then the library replaced by its stub.
    (tmp_path / "real.c").write_text("int fooAdd(int a, int b) { return a + b; }\nint fooTable[4];\n")
    (tmp_path / "real.map").write_text("libfoo.so.1 { global: fooAdd; fooTable; local: *; };\n")
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\nint fooAdd(int, int);\nint main(int argc, char **argv) {\n'
        '  puts("loaded"); fflush(stdout);\n  if (argc > 1) printf("%d\\n", fooAdd(1, 2));\n  return 0;\n}\n')
    library = tmp_path / "libfoo.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", f"-Wl,--version-script={tmp_path}/real.map",
                    "-o", str(library), str(tmp_path / "real.c")], check=True)
    (tmp_path / "libfoo.so").symlink_to("libfoo.so.1")
    program = tmp_path / "main"
    subprocess.run(["gcc", "-o", str(program), str(tmp_path / "main.c"), f"-L{tmp_path}", "-lfoo",
                    f"-Wl,-rpath,{tmp_path}", "-Wl,-z,now"], check=True)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(library)], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "libfoo.so.1: stub" in proc.stdout, proc.stdout
    # The data symbol is not copied: the stub exports the function, under its version node.
    exported = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True,
                              check=True).stdout
    assert "fooAdd@@libfoo.so.1" in exported and "fooTable" not in exported, exported
    # Bound at load time (-z now) to the stub: the program starts; the call aborts, naming the function.
    loaded = subprocess.run([str(program)], capture_output=True, text=True, check=False)
    assert loaded.returncode == 0 and loaded.stdout == "loaded\n", (loaded.returncode, loaded.stdout, loaded.stderr)
    called = subprocess.run([str(program), "call"], capture_output=True, text=True, check=False)
    assert called.returncode != 0 and called.stdout == "loaded\n", (called.returncode, called.stdout)
    assert "fooAdd called: libfoo.so.1 is a stub" in called.stderr, called.stderr
