"""Plant each bug of issue 12's list, one at a time, and check that a test fails: ``python tests/mutants.py``.

Each mutant replaces one snippet of the code, runs the test file that guards it, and restores the file.
A mutant that no test catches is printed as NOT CAUGHT. (Run by hand; pytest does not collect this file.)
"""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
MUTANTS = [
 ("keep latest instead of best", "gptcore/training/loop.py", "            if val < st.best_val:", "            if True:", "tests/test_promises.py"),
 ("no time-budget pacing", "gptcore/training/loop.py", "        if tc.time_budget:\n            progress = max(progress, elapsed / tc.time_budget)", "        pass", "tests/test_promises.py"),
 ("resume resets best_val", "gptcore/training/loop.py", "        if st.cuda_rng is not None and self.device.type == \"cuda\":", "        st.best_val = float('inf')\n        if st.cuda_rng is not None and self.device.type == \"cuda\":", "tests/test_promises.py"),
 ("resume resets elapsed", "gptcore/training/loop.py", "        if st.cuda_rng is not None and self.device.type == \"cuda\":", "        st.elapsed = 0.0\n        if st.cuda_rng is not None and self.device.type == \"cuda\":", "tests/test_promises.py"),
 ("resume resets history", "gptcore/training/loop.py", "        if st.cuda_rng is not None and self.device.type == \"cuda\":", "        st.history = []\n        if st.cuda_rng is not None and self.device.type == \"cuda\":", "tests/test_promises.py"),
 ("save in place, no staging", "gptcore/storage.py", "        atomic_write_bytes(directory / _STAGED.format(name), data)", "        atomic_write_bytes(directory / name, data)\n        atomic_write_bytes(directory / _STAGED.format(name), data)", "tests/test_checkpoint.py"),
 ("fused dropout in eval", "gptcore/models/attention.py", "self.dropout if self.training else 0.0", "self.dropout", "tests/test_model.py"),
 ("explicit skips attention dropout", "gptcore/models/attention.py", "self.dropout if self.training else 0.0, self.attn_dropout, attn_out)", "self.dropout if self.training else 0.0, None, attn_out)", "tests/test_model.py"),
 ("verdict on the median", "gptcore/experiments/bench.py", "run[\"max_val_loss\"] <= max_loss and run[\"max_wall_s\"] <= max_wall", "run[\"val_loss\"] <= max_loss and run[\"wall_s\"] <= max_wall", "tests/test_bench.py"),
 ("not run shown as not met", "gptcore/experiments/bench.py", "    if run is None:\n        return \"not run\"", "    if run is None:\n        return _mark(False)", "tests/test_bench.py"),
]
for name, path, old, new, test in MUTANTS:  # noqa: B007
    p = ROOT / path
    src = p.read_text()
    assert old in src, name
    p.write_text(src.replace(old, new, 1))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-cov", test],
                           cwd=ROOT, capture_output=True, text=True, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        failed = [l for l in r.stdout.splitlines() if l.startswith("FAILED")]
        print(f"{name}: {'CAUGHT by ' + failed[0].split('::')[1][:70] if failed else 'NOT CAUGHT rc=' + str(r.returncode)}", flush=True)
    finally:
        p.write_text(src)
