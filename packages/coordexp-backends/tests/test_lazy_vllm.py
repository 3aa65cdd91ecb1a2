"""The package imports without vLLM: only the vLLM backends load it, when used."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import importlib, json, pkgutil, sys
import coordexp_backends as pkg
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    if info.name != "coordexp_backends.vllm_logits":  # loaded by vLLM engines only
        importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m == "vllm" or m.startswith("vllm."))))
"""


def test_importing_every_module_but_the_engine_plugin_loads_no_vllm() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
