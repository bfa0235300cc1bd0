"""Run by the graded kernel at its start (an IPython startup file): caps what one cell prints, inside the kernel.

A message over the runner's size limit would cut the kernel's output channel, and every later cell would lose its
outputs; so each write is sent in pieces well under that limit, and a cell's printing stops at a cap the runner's
executed copy could not keep anyway, with a note saying so. It protects the student's own outputs, not the grader:
code that undoes it only loses its own outputs, and the runner still refuses any message over its limit.
"""


def _cap_printing(cell_cap: int = 2_000_000, piece: int = 1_000_000) -> None:
    """Each cell prints at most `cell_cap` characters (twice what the executed copy keeps of one output), sent in
    messages of at most `piece` characters (at most 4 MB in UTF-8, under the runner's 8 MB)."""
    import sys

    shell = get_ipython()  # noqa: F821 - IPython defines it for startup files
    printed = {"cell": 0}
    shell.events.register("pre_run_cell", lambda *args: printed.update(cell=0))

    def capped(stream):
        write, flush, pending = stream.write, stream.flush, {"chars": 0}

        def capped_write(text):
            room = cell_cap - printed["cell"]
            if room <= 0:
                return len(text)
            kept = text[:room]
            for start in range(0, len(kept), piece):
                part = kept[start:start + piece]
                write(part)
                printed["cell"] += len(part)
                pending["chars"] += len(part)
                if pending["chars"] >= piece:        # one message per piece, not one for all since the last flush
                    flush()
                    pending["chars"] = 0
            if len(text) > room:
                write(f"\n[printing cut by the grader: a cell may print {cell_cap:,} characters]\n")
            return len(text)
        return capped_write

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        stream.write = capped(stream)


_cap_printing()
del _cap_printing
