"""``python -m pyxentrace.recorder``: the ``record`` command as its own process."""

from pyxentrace.recorder.commands import record_cmd

if __name__ == "__main__":
    record_cmd(prog_name="pyxentrace record")
