"""Progress bars, drawn by tqdm (`tqdm.auto`: a widget in a notebook, text on a terminal).

The runtime shows one only when asked (`progress=True`, or a fit on a terminal); this module
only adapts tqdm to the runtime's calls: `bar(done)` moves the bar to `done` of `total`, and
`bar.note(text)` shows the latest metrics after it."""
from __future__ import annotations

from tqdm.auto import tqdm


class ProgressBar:
    def __init__(self, total: int, label: str, stream=None, first: int = 0):
        self.total = max(1, int(total))
        # `initial`: done before this bar started (a resumed fit); tqdm's rate and time left count
        # only the steps it sees, so earlier work is not taken as free
        self._bar = tqdm(total=self.total, initial=min(int(first), self.total), desc=label, file=stream,
                         leave=True, mininterval=0.2, dynamic_ncols=True)

    def __call__(self, done: int) -> None:
        done = min(int(done), self.total)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)
        if done >= self.total:
            self.close()

    def note(self, text: str) -> None:
        self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        self._bar.close()
