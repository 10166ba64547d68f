"""Helpers shared by the scripts of scripts/gpu/ (run_all.sh's Python side).

Nothing here imports torch at module level: the `record` / `measure` paths must work even where
torch is broken, so that a failing stage can still be written to results.json.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time


def nvidia_smi():
    return shutil.which("nvidia-smi")


def gpu_mem_used_mib():
    """Memory in use on GPU 0 (MiB, the whole device as nvidia-smi reports it); None without one."""
    if not nvidia_smi():
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10).stdout
        return float(out.split()[0])
    except Exception:
        return None


class GpuMemSampler:
    """Peak GPU-0 memory while a block runs, by `nvidia-smi -lms` in the background (both sides
    measured the same way: whole device, CUDA context and allocator caches included)."""

    def __init__(self, period_ms=50):
        self.period_ms, self.peak, self.proc, self.thread = period_ms, None, None, None

    def __enter__(self):
        self.baseline = gpu_mem_used_mib()
        if nvidia_smi():
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0",
                 "-lms", str(self.period_ms)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                v = float(line.strip())
            except ValueError:
                continue
            self.peak = v if self.peak is None else max(self.peak, v)

    def __exit__(self, *exc):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return False

    def result(self):
        extra = None if self.peak is None or self.baseline is None else self.peak - self.baseline
        return {"gpu_mem_baseline_mib": self.baseline, "gpu_mem_peak_mib": self.peak,
                "gpu_mem_peak_over_baseline_mib": extra}


def vm_hwm_mb(pid):
    """Peak resident set (VmHWM) of a live process in MB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(cmd, timeout, log_path, env=None, cwd=None):
    """Run `cmd` (its output to log_path) under a timeout, sampling its peak RSS and the GPU's
    memory. Returns a dict: cmd, rc (124 on timeout), wall_s, peak_rss_mb, gpu memory, output tail."""
    t0 = time.perf_counter()
    peak_rss = 0.0
    timed_out = False
    with GpuMemSampler() as mem, open(log_path, "w") as log:
        # The child gets its own process group (so a timeout kills all of it); it would then escape
        # the `timeout` around run_all.sh's stage, so a TERM to us is passed on before we go.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)

        def on_term(signum, frame):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            raise SystemExit(128 + signum)

        old_term = signal.signal(signal.SIGTERM, on_term)
        while proc.poll() is None:
            peak_rss = max(peak_rss, vm_hwm_mb(proc.pid) or 0.0)
            if time.perf_counter() - t0 > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.02)
        signal.signal(signal.SIGTERM, old_term)
    wall = time.perf_counter() - t0
    with open(log_path, errors="replace") as fh:
        text = fh.read()
    res = {"cmd": " ".join(map(str, cmd)), "rc": 124 if timed_out else proc.returncode, "wall_s": round(wall, 3),
           "peak_rss_mb": round(peak_rss, 1), **mem.result(), "output_tail": text[-1500:]}
    return res


def load_json(path, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def write_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, default=str)
    os.replace(tmp, path)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def max_abs_diff_safetensors(a_path, b_path):
    """Per tensor and overall max |a - b| of two safetensors files (same keys); bit-identity too."""
    import numpy as np
    from safetensors.numpy import load_file

    a, b = load_file(a_path), load_file(b_path)
    per = {}
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b or a[k].shape != b[k].shape:
            per[k] = {"error": "missing or shape differs"}
            continue
        x, y = a[k].astype(np.float64), b[k].astype(np.float64)
        per[k] = {"max_abs_diff": float(np.abs(x - y).max()) if x.size else 0.0,
                  "max_abs": float(np.abs(y).max()) if y.size else 0.0,
                  "bit_identical": a[k].tobytes() == b[k].tobytes()}
    worst = max((v.get("max_abs_diff", float("inf")) for v in per.values()), default=0.0)
    return {"max_abs_diff": worst, "bit_identical": all(v.get("bit_identical") for v in per.values()),
            "tensors": per}


def parse_toml_flat(path):
    """The flat `key = value` lines of a config.toml written by `unravel train` (no tomllib needed)."""
    out = {}
    with open(path) as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if "=" not in line or line.startswith("["):
                continue
            k, v = (s.strip() for s in line.split("=", 1))
            if v.startswith('"'):
                out[k] = v.strip('"')
            elif v in ("true", "false"):
                out[k] = v == "true"
            else:
                try:
                    out[k] = int(v.replace("_", ""))
                except ValueError:
                    try:
                        out[k] = float(v.replace("_", ""))
                    except ValueError:
                        out[k] = v
    return out


def read_metrics(run_dir):
    """The `kind: train` lines of a run's metrics.jsonl (a run cut by a timeout still has some)."""
    rows = []
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
            for line in fh:
                try:
                    m = json.loads(line)
                except ValueError:
                    continue
                if m.get("kind") == "train":
                    rows.append(m)
    except OSError:
        pass
    return rows


def torch_info():
    """torch / CUDA facts worth recording next to every number (TF32 state included)."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        return {"torch_error": repr(e)}
    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
            "torch_cuda": torch.version.cuda,
            "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
