"""CLIP4STRTrainer's evaluation in-process: one collator, every record read once, skipped records counted in the
metrics (also when a whole batch is skipped)."""

from __future__ import annotations

import pytest

from conftest import make_model, png_bytes_of, word_image
from modeling_clip4str import CLIP4STRProcessor
from modeling_clip4str.labels_clip4str import LabelCleaner
from training.data import EvaluationDataset, STRDataCollator, STRExampleFilter
from training.trainer import CLIP4STRTrainer


@pytest.fixture
def trainer_for(caption_tokenizer, tmp_path):
    from training.run_str import STRTrainingArguments

    model = make_model(caption_tokenizer)
    processor = CLIP4STRProcessor.from_config(model.config)
    scored = []

    def compute_metrics(prediction):
        scored.append(len(prediction.predictions))
        return {"scored": len(prediction.predictions)}

    def build(eval_dataset):
        args = STRTrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=2, use_cpu=True,
                                    report_to=[], dataloader_num_workers=0)
        return CLIP4STRTrainer(model=model, args=args, eval_dataset=eval_dataset, processing_class=processor,
                               data_collator=STRDataCollator(processor, max_label_length=model.config.max_label_length),
                               compute_metrics=compute_metrics)

    return build, scored


def test_evaluation_counts_skipped_records_and_scores_each_kept_one_once(trainer_for):
    build, scored = trainer_for
    good = png_bytes_of(word_image("ab"))
    records = [(good, "ab"), (b"broken", "cd"), (b"broken", "ef"), (None, "gh"), (good, "a b!"), (good, "")]
    dataset = EvaluationDataset(records, STRExampleFilter(LabelCleaner("0123456789abcdefghijklmnopqrstuvwxyz")))
    trainer = build(dataset)
    for _ in range(2):  # counts are those of each pass, not accumulated
        metrics = trainer.evaluate()
        # Batches of 2: [ab, broken], [broken, no image] (nothing left to read), [a b!, empty label].
        assert metrics["eval_scored"] == 2
        assert metrics["eval_data/kept"] == 2 and metrics["eval_data/removed_characters"] == 1
        assert metrics["eval_data/undecodable_image"] == 2 and metrics["eval_data/missing_image"] == 1
        assert metrics["eval_data/empty_after_filtering"] == 1
    assert scored == [2, 2]


def test_evaluation_reports_the_same_loss_every_time(trainer_for):
    build, _ = trainer_for
    good = png_bytes_of(word_image("ab"))
    records = [(good, "ab"), (good, "cd"), (b"broken", "ef")]  # batches of 2: the second one is empty
    trainer = build(EvaluationDataset(records, STRExampleFilter(LabelCleaner("abcdefghijklmnopqrstuvwxyz"))))
    first, second = trainer.evaluate(), trainer.evaluate()
    # In eval mode the model draws its permutation orders from a fixed seed: the loss is a number to compare runs by.
    assert first["eval_loss"] > 0 and first["eval_loss"] == second["eval_loss"]
