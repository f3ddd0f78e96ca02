"""CLIP4STRTrainer's evaluation in-process: one collator, every record read once, skipped records counted in the
metrics (also when a whole batch is skipped)."""

from __future__ import annotations

import pytest

from conftest import make_model, png_bytes_of, word_image
from modeling_clip4str import CLIP4STRProcessor
from modeling_clip4str.labels_clip4str import LabelCleaner
from training.data import EvaluationDataset, STRDataCollator, STRExampleFilter
from training.train.trainer import CLIP4STRTrainer


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


@pytest.mark.parametrize("optim, expected", [("adamw_torch_fused", "AdamW"), ("adamw_torch", "AdamW"), ("sgd", "SGD")])
def test_the_optimizer_is_the_one_optim_names_with_the_recipe_groups(caption_tokenizer, tmp_path, optim, expected):
    from training.run_str import STRTrainingArguments

    model = make_model(caption_tokenizer)
    args = STRTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], optim=optim,
                                learning_rate=1e-3, weight_decay=0.1, decoder_lr_multiplier=2.0)
    optimizer = CLIP4STRTrainer(model=model, args=args).create_optimizer()
    assert type(optimizer).__name__ == expected
    assert bool(optimizer.defaults.get("fused")) is (optim == "adamw_torch_fused")
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert set(groups) == {"towers", "towers_no_decay", "decoders", "decoders_no_decay"}
    # Each group keeps its own learning rate and weight decay (the recipe's), not the optimizer's single ones.
    assert groups["decoders"]["lr"] == pytest.approx(2 * groups["towers"]["lr"])
    assert groups["towers"]["weight_decay"] == 0.1 and groups["towers_no_decay"]["weight_decay"] == 0.0
    trained = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    assert sum(p.numel() for group in optimizer.param_groups for p in group["params"]) == trained
