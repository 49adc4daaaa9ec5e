# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progressive delivery of a model (issue 15): a canary that takes a share of the traffic step by step, is judged by
its own metrics at each step, and is promoted or aborted. One concern per module, all pure (no Ansible, no cluster):

- :mod:`.spec`: the catalog's ``strategy.canary`` - its JSON Schema, the rules the schema cannot express, durations,
  and the checked settings (:class:`.spec.Canary`) the other modules take;
- :mod:`.plan`: the traffic split a cluster gets, and per step the replica counts (replica ratio) and the weight
  actually expressed, the pods the GPU preflight must count;
- :mod:`.traffic`: the objects of a step: the canary's Deployment from the stable one, the Services of each version,
  Gateway API ``HTTPRoute``, Istio ``VirtualService`` and ``DestinationRule``;
- :mod:`.exposition`: the samples of a Prometheus text exposition, read with prometheus_client's parser;
- :mod:`.analysis`: requests, error ratio and p99 per version from two scrapes, and the verdict of a step.
- :mod:`.state`: where a canary stands in the cluster: the stable pods' hash, each version's pods, the step an
  interrupted run left it in.
- :mod:`.progress`: the decision after each check of a step: wait, next step, promote, or abort.
"""
