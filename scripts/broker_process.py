"""Starting a broker for the measuring scripts (rss-topics.py, idle-connections.py) and
reading its memory."""
import os
import subprocess


def rss_kib(pid):
    """The process's resident set, in KiB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_broker(binary, data_dir, settings):
    """Starts `binary` on 127.0.0.1:0 over `data_dir` with `--set` `settings`; returns
    the process and its `host:port`. AGENTLOG_* variables are not passed on: the broker
    reads each as a setting."""
    command = [binary, "--listen", "127.0.0.1:0", "--data-dir", data_dir]
    for setting in settings:
        command += ["--set", setting]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLOG_")}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    line = proc.stdout.readline()
    prefix = "agentlog listening on "
    if not line.startswith(prefix):
        proc.kill()
        raise RuntimeError(f"the broker did not print its address: {line!r}")
    return proc, line[len(prefix) :].strip()
