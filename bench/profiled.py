"""`viva serve` under cProfile, counting CPU time (not wall time) and only between two
signals, so a profile covers a benchmark's crowd and nothing of the start-up.

SIGUSR1 starts the profiler; SIGUSR2 stops it and writes the stats to the file named
first on the command line (read them with pstats). A wall-clock profile of a server on a
shared machine charges to whatever ran when the process was descheduled, typically a
socket send; CPU time does not.

Usage: python -m bench.profiled STATS_FILE   (the rest as `viva serve`; bench.common.Server)
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from types import FrameType

from scheduler.cli import main


def run() -> int:
    out = sys.argv[1]
    profiler = cProfile.Profile(time.process_time)

    def start(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return main(["serve", *sys.argv[2:]])


if __name__ == "__main__":
    sys.exit(run())
