"""The command line's progress bar: steps for a run that stops at a step count, seconds for a run with a
time budget (its step count is only an upper bound, so a bar of steps would show a wrong time left)."""

from __future__ import annotations


class ProgressBar:
    def __init__(self, max_iters: int, time_budget: float | None, step: int = 0, elapsed: float = 0.0):
        from tqdm import tqdm

        self.budget = time_budget
        if time_budget:
            self.bar = tqdm(total=round(time_budget), initial=min(round(elapsed), round(time_budget)), unit="s",
                            dynamic_ncols=True, mininterval=1.0,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s budget [{elapsed}<{remaining}{postfix}]")
        else:
            self.bar = tqdm(total=max_iters, initial=step, unit="step", dynamic_ncols=True, mininterval=1.0)

    def update(self, step: int, elapsed: float, loss: float | None, tokens_per_sec: float | None) -> None:
        if self.budget:
            self.bar.update(min(elapsed, self.budget) - self.bar.n)
            self.bar.set_postfix_str(f"step {step}, loss {loss or 0:.3f}, {tokens_per_sec or 0:,.0f} tok/s",
                                     refresh=False)
        else:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss or 0:.3f}", tok_s=f"{tokens_per_sec or 0:,.0f}", refresh=False)

    def close(self) -> None:
        self.bar.close()
