"""Lightning's loop counters count loader batches (micro-batches); a run resumed on another layout (processes,
micro-batch) reads another number of rows per loader batch. Its counters are rescaled to the new batches, so that
the epoch ends where the data does: with the old count Lightning would end the epoch early (at its `len` of the new
loader) and start the next epoch's order mid-way through this one's rows."""
from __future__ import annotations

def rescale_batch_progress(loops: dict, rows_before: int, rows_now: int) -> None:
    """In place: the training epoch loop's batch counters (and the logger's batch count) from loader batches of
    `rows_before` rows to batches of `rows_now` rows. `completed` keeps its lag behind `processed` (the save ran
    inside the last batch's hooks)."""
    epoch_loop = loops["fit_loop"]
    progress = epoch_loop["epoch_loop.batch_progress"]

    def scaled(n: int) -> int:
        return n * rows_before // rows_now

    for part in ("total", "current"):
        counts = progress[part]
        lag = counts["processed"] - counts["completed"]
        for key in ("ready", "started", "processed"):
            counts[key] = scaled(counts[key])
        counts["completed"] = counts["processed"] - lag
    state = epoch_loop["epoch_loop.state_dict"]
    state["_batches_that_stepped"] = scaled(state["_batches_that_stepped"])
