"""The generic generation arguments that `generate` meets (from users, pipelines, `Seq2SeqTrainer`): each one is either
honoured, with the meaning it has for a greedy character reader, or refused by name. None is silently ignored.

Honoured:
- `max_new_tokens=n` / `max_length=n`: the outputs are cut to their first n positions, so the text read has at most n
  characters. The word is still read in full first (the cross-modal branch reads the caption of the whole visual
  prediction), so the kept characters are those of the uncut reading. The outputs hold no start token, so both
  arguments count the same positions; given both, the smaller applies.
- `output_scores=True` / `output_logits=True` (with `return_dict_in_generate=True`): the output's `scores` holds the
  final cross-modal logits per position, a tuple of `[B, C + 1]` tensors, as transformers' `generate` returns them.
- `generation_config=`: its settings count as if passed one by one, except those still at transformers' defaults
  (`max_length=20` included: a generation config cannot tell it from unset).

Accepted without effect, because they cannot change what a greedy reader computes: `use_cache`, `synced_gpus`,
`attention_mask` (images have no padding), `labels` (`Seq2SeqTrainer` passes its whole batch), settings equal to
greedy decoding's (`do_sample=False`, `num_beams=1`, `temperature=1.0`, ...) or to transformers' defaults, and
special token ids equal to the model's.

Refused (ValueError naming them): sampling, beam search and every other setting that changes how tokens are chosen
(`do_sample=True`, `num_beams>1`, `temperature`, `top_k`, `top_p`, `repetition_penalty`, ...), output options this
model does not produce in `generate` (`output_attentions`, `output_hidden_states`: call the model instead), and
special token ids other than the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig, GenerationMixin

from .backend_clip4str import TorchBackend, check_pixel_values
from .outputs_clip4str import CLIP4STRGenerateOutput
from .reading_clip4str import ReadingLoop, check_max_positions

# Generation settings that carry no decoding choice.
_WITHOUT_EFFECT = {"use_cache", "synced_gpus", "attention_mask", "transformers_version", "_from_model_config"}
_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
_HONOURED = {"max_new_tokens", "max_length", "output_scores", "output_logits", "return_dict_in_generate"}
# `generate` arguments of transformers that are not generation-config fields; None is their neutral value.
_CALL_ARGUMENTS = (
    "logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn", "assistant_model", "streamer",
    "negative_prompt_ids", "negative_prompt_attention_mask", "custom_generate", "tokenizer", "assistant_tokenizer",
)


@dataclass
class ReadingRequest:
    """What the generic arguments ask of a reading: cut the outputs to `max_positions` (None: keep all), return
    per-position `scores`, return the dict output."""

    max_positions: int | None = None
    output_scores: bool = False
    return_dict_in_generate: bool = False


def align_generation_config(model) -> None:
    """Give `model`'s generation config the model's special ids. `generate` is the model's own, but `Trainer` checks
    the generation config's special ids against the character tokenizer, and a saved `generation_config.json` should
    name the ids this model generates (directories saved by earlier versions carry the CLIP tower's)."""
    if getattr(model, "generation_config", None) is not None:
        for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
            setattr(model.generation_config, name, getattr(model.config, name))


def _is_neutral(name: str, value, defaults: dict) -> bool:
    return value is None or (name in defaults and value == defaults[name])


def reading_request(kwargs: dict, config, return_dict_in_generate: bool) -> ReadingRequest:
    """Turn the generic generation arguments `kwargs` (consumed) into a [`ReadingRequest`] for a model of `config`,
    refusing what a greedy character reader cannot honour."""
    defaults = GenerationConfig._get_default_generation_params()
    known = set(GenerationConfig().to_dict())
    settings = {}
    generation_config = kwargs.pop("generation_config", None)
    if generation_config is not None:
        if not isinstance(generation_config, GenerationConfig):
            raise TypeError(f"`generation_config` must be a GenerationConfig, got {type(generation_config).__name__}.")
        requested = generation_config.to_dict().items()
        settings.update((name, value) for name, value in requested if not _is_neutral(name, value, defaults))
    for name in _CALL_ARGUMENTS:
        if kwargs.get(name) is not None:
            settings[name] = kwargs[name]
        kwargs.pop(name, None)
    unknown = sorted(name for name in kwargs if name not in known and name not in _WITHOUT_EFFECT)
    if unknown:
        raise TypeError(f"Unexpected arguments for CLIP4STR generate: {', '.join(unknown)}.")
    settings.update((name, value) for name, value in kwargs.items() if value is not None)
    kwargs.clear()

    refused = []
    for name, value in settings.items():
        if name in _WITHOUT_EFFECT or name in _HONOURED:
            continue
        if name in _TOKEN_IDS:
            expected = config.bos_token_id if name == "decoder_start_token_id" else getattr(config, name)
            if value != expected:
                refused.append(f"{name}={value!r} (this model's is {expected})")
        elif name in _CALL_ARGUMENTS or not _is_neutral(name, value, defaults):
            refused.append(f"{name}={value!r}")
    if refused:
        raise ValueError(
            "CLIP4STR reads greedily, in one fixed pass (left to right, then refinement); these generation settings "
            f"have no meaning for it: {', '.join(refused)}. Use `refine_iters`, `decode_ar` and `max_new_tokens`; for "
            "attentions or hidden states call the model itself (`model(pixel_values, output_attentions=True)`)."
        )

    lengths = [settings[name] for name in ("max_new_tokens", "max_length") if name in settings]
    max_positions = check_max_positions(lengths)
    output_scores = bool(settings.get("output_scores") or settings.get("output_logits"))
    return_dict_in_generate = bool(return_dict_in_generate or settings.get("return_dict_in_generate"))
    if output_scores and not return_dict_in_generate:
        raise ValueError(
            "`output_scores` / `output_logits` are returned in the dict output: pass `return_dict_in_generate=True`."
        )
    return ReadingRequest(
        max_positions=max_positions,
        output_scores=output_scores,
        return_dict_in_generate=return_dict_in_generate,
    )


class CLIP4STRGenerationMixin(GenerationMixin):
    """`generate` for CLIP4STR: the reading loop over the model's PyTorch back-end, with transformers' generic
    generation arguments honoured or refused as this module's docstring says."""

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.FloatTensor | None = None,
        refine_iters: int | None = None,
        decode_ar: bool | None = None,
        return_dict_in_generate: bool = False,
        **kwargs,
    ) -> torch.LongTensor | CLIP4STRGenerateOutput:
        r"""
        Read the text of word images: predict (visual branch, left to right), cross-check (cross-modal branch, left to
        right), then `refine_iters` cloze refinement passes of both branches. Reading is greedy and deterministic.

        Args:
            pixel_values (`torch.FloatTensor` of shape `[B, 3, H, W]`): from [`CLIP4STRImageProcessor`]; integer
                (raw) pixels and NaN or infinite values are refused.
            refine_iters (`int`, *optional*): an integer >= 0; defaults to `config.refine_iters`.
            decode_ar (`bool`, *optional*): left-to-right (default `config.decode_ar`) or all positions at once.
            return_dict_in_generate (`bool`): return a [`CLIP4STRGenerateOutput`] instead of the ids alone.
            kwargs: transformers' generic generation arguments. `max_new_tokens=n` / `max_length=n` cut the outputs to
                their first n positions (the text then has at most n characters; the word is read in full first,
                and without a start token in the output both count the same positions: the smaller applies);
                `output_scores` / `output_logits` add `scores` to the dict output; a `generation_config` counts as
                its non-default settings. Sampling, beams and other token-choice settings are refused by name; see
                `generation_clip4str` for the full rule.

        Returns:
            `torch.LongTensor` `[B, positions]` of character ids (`[P]` after the first `[E]`), or
            [`CLIP4STRGenerateOutput`]. Decode them with `processor.batch_decode`.
        """
        pixel_values = _generate_input(pixel_values, kwargs)
        request = reading_request(kwargs, self.config, return_dict_in_generate)
        output = ReadingLoop(TorchBackend(self), self.config).generate(
            pixel_values, refine_iters, decode_ar, request.max_positions, request.return_dict_in_generate
        )
        if not request.return_dict_in_generate:
            return output["sequences"]
        scores = tuple(output["logits"].unbind(1)) if request.output_scores else None
        return CLIP4STRGenerateOutput(**output, scores=scores)


def _generate_input(pixel_values, kwargs: dict) -> torch.Tensor:
    """The images `generate` reads: `pixel_values`, or `inputs` as generic callers name them."""
    if pixel_values is None:
        pixel_values = kwargs.pop("inputs", None)
    if pixel_values is None:
        raise ValueError("generate needs `pixel_values`.")
    kwargs.pop("labels", None)  # `Seq2SeqTrainer` passes its whole batch; reading never looks at the labels
    check_pixel_values(pixel_values)
    return pixel_values


__all__ = ["CLIP4STRGenerationMixin", "ReadingRequest", "align_generation_config", "reading_request"]
