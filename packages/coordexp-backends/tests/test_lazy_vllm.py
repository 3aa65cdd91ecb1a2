"""The package imports without vLLM: only the vLLM backends load it, when used."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import importlib, json, pkgutil, sys
import coordexp_backends as pkg
# loaded only by vLLM processes and by code that already runs vLLM
ENGINE_SIDE = {"coordexp_backends.vllm_logits", "coordexp_backends.vllm_gloo"}
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    if info.name not in ENGINE_SIDE:
        importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m == "vllm" or m.startswith("vllm."))))
"""


def test_importing_every_module_but_the_engine_plugin_loads_no_vllm() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
