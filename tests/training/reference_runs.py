"""Arguments of the reference runs shared by several training test modules (fixtures in conftest.py)."""

# Rows of 128 tokens: the prepared cache holds these shards too; what the process tests check (rows, weights,
# signals, layouts) does not depend on the row length, and a step costs a quarter of one at the default 512.
SHORT_ROWS = "data.row_length=128"

# 12 steps of 16 rows; a checkpoint every 2 steps and the sample ids of every micro-batch, for resume tests; no
# validation or retrieval (what these runs are compared on is rows, weights and moments).
DDP_ARGS = [SHORT_ROWS, "data.global_batch_rows=16", "trainer.max_steps=12", "callbacks.sample_log=true", "callbacks.checkpoint_every_n_steps=2",
            "callbacks.retrieval.every=null", "trainer.limit_val_batches=0", "trainer.progress_bar=false"]
