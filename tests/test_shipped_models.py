"""The models shipped in checkpoints/: each loads, fits a Space (every file under 10 MB) and gives the loss its
metrics quote on the whole validation split; a model with snapshots ends its replay at its own weights.
A module of its own, so that the test runner can place these long evaluations beside the rest."""

from pathlib import Path

import pytest
import torch

from gptcore import checkpoint as ckpt
from gptcore import snapshots

pytestmark = pytest.mark.slow  # whole-split evaluations: started first, beside the rest


@pytest.mark.parametrize("name", ["shakespeare-char", "bigram", "two-layer"])
def test_shipped_checkpoints_load_fit_a_space_and_match_their_metrics(name, corpus):
    """The quoted loss is what the stored weights give, and no file needs Git LFS on a Space (10 MB)."""
    from gptcore.evaluate import split_loss

    directory = Path(__file__).resolve().parent.parent / "checkpoints" / name
    shipped = ckpt.checkpoint_files(directory)
    assert len(shipped) == len(ckpt.SHIPPED_FILES)
    assert all(f.stat().st_size < 10_000_000 for f in shipped)
    ck = ckpt.load_checkpoint(directory)
    assert ck.metrics["val_loss"] == pytest.approx(split_loss(ck.model, corpus.val, ck.config.model.block_size),
                                                   abs=1e-4)
    if snapshots.exists(directory):  # the replay of its training ends with these very weights
        assert (directory / snapshots.SNAPSHOTS_FILE).stat().st_size < 10_000_000
        last = snapshots.Snapshots.load(directory).taken[-1]
        assert last.step == ck.metrics["best_step"]
        maps = ck.model.eval().attention_maps(torch.tensor([snapshots.Snapshots.load(directory).probe_ids]))
        torch.testing.assert_close(last.attention.float(), torch.stack([m[0] for m in maps]), atol=5e-3, rtol=0)
