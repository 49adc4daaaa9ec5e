# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy engine behind ``creativeflow.ai_serving.model_deploy``, one concern per module.

- :mod:`.spec`: the action's argument spec (defined once; the doc stub module and the action share it);
- :mod:`.checks`: the input checks, before the cluster is asked anything (pure);
- :mod:`.plan`: what the cluster's answers mean: references, replicas, what to remove, what a rollback
  restores, the final messages (pure);
- :mod:`.kube`: the reads and writes, through kubernetes.core's client (server-side apply, dry run, delete);
- :mod:`.engine`: the steps in order, each timed: preflight, then apply, wait and roll back.

Everything but :mod:`.kube` and :mod:`.engine` is unit tested without a cluster.
"""
