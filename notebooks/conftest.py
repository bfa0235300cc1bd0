"""nbval in `make test`: a cell that stops at an answer not written yet is skipped as "not answered yet", not failed.

A notebook's cells run in order in one kernel, so after a stub has stopped one, a cell that reads the name it never
defined (a NameError) is skipped too: it waits on that answer. Any other failure stays a failure.
"""
import pytest

from answers import export

_stopped = {}          # notebook path -> the questions whose stubs have run in it (each notebook runs in one worker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item):
    report = yield
    if report.when != "call" or not report.failed:
        return report
    text = report.longreprtext                       # nbval puts the cell's traceback there, not in the exception
    question = export.unanswered(text) if "NotImplementedError" in text else None
    stopped = _stopped.setdefault(str(item.path), [])
    if question:
        stopped.append(question)
        reason = f"not answered yet: question {question}"
    elif stopped and "NameError" in text:
        reason = f"waits on question {', '.join(dict.fromkeys(stopped))}, not answered yet"
    else:
        return report
    report.outcome, report.longrepr = "skipped", (str(item.path), item.reportinfo()[1] or 0, reason)
    return report


def pytest_terminal_summary(terminalreporter):
    """One line per notebook with questions not answered yet, and how to check one."""
    waiting = {}
    for report in terminalreporter.stats.get("skipped", []):
        path, _, reason = report.longrepr if isinstance(report.longrepr, tuple) else ("", 0, "")
        if "not answered yet: question " in reason:
            waiting.setdefault(path.rsplit("/", 1)[-1], []).append(reason.rsplit(" ", 1)[-1])
    if waiting:
        terminalreporter.section("questions not answered yet (their cells are skipped, not failed)")
        for notebook, ids in sorted(waiting.items()):
            terminalreporter.write_line(f"{notebook}: {', '.join(dict.fromkeys(ids))}; check one with "
                                        f"`make check NB={notebook[:2]} Q=<id>`")
