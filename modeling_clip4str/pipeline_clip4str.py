"""Pipeline that reads the text of word images with CLIP4STR."""

from __future__ import annotations

from transformers import Pipeline

from .image_processing_clip4str import load_image


class CLIP4STRPipeline(Pipeline):
    r"""
    Reads word images: `pipe(image)` returns `[{"generated_text": ...}]`, `pipe([image, ...])` one such list per
    image (`pipe([])` returns `[]`). Images may be PIL images (any mode), arrays, tensors, file paths or URLs.

    Call arguments: `refine_iters`, `decode_ar` (as in `generate`) and `return_confidence` (adds `"score"`, the word
    confidence).
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError("CLIP4STRPipeline needs the model's processor (CLIP4STRProcessor).")
        # Batching (batch_size > 1) pads with the tokenizer's pad id; images are all the same size.
        if self.tokenizer is None:
            self.tokenizer = self.processor.tokenizer

    def __call__(self, images, *args, **kwargs):
        """Read `images` (one image, or a list of them: an empty list reads nothing and returns `[]`)."""
        if isinstance(images, (list, tuple)) and len(images) == 0:
            call_arguments = {key: value for key, value in kwargs.items() if key not in ("batch_size", "num_workers")}
            self._sanitize_parameters(**call_arguments)  # still refuse unknown arguments
            return []
        return super().__call__(images, *args, **kwargs)

    def _sanitize_parameters(self, refine_iters=None, decode_ar=None, return_confidence=None, timeout=None, **kwargs):
        if kwargs:
            raise TypeError(f"Unexpected arguments for the CLIP4STR pipeline: {', '.join(sorted(kwargs))}.")
        preprocess_params = {} if timeout is None else {"timeout": timeout}
        forward_params = {}
        if refine_iters is not None:
            forward_params["refine_iters"] = refine_iters
        if decode_ar is not None:
            forward_params["decode_ar"] = decode_ar
        postprocess_params = {} if return_confidence is None else {"return_confidence": return_confidence}
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, image, timeout=None):
        if isinstance(image, str) and image.startswith(("http://", "https://")):
            image = load_image(image, timeout=timeout)  # the processor's own loader, with the timeout
        pixel_values = self.processor(images=image)["pixel_values"]
        return {"pixel_values": pixel_values.to(self.dtype) if self.dtype is not None else pixel_values}

    def _forward(self, model_inputs, **generate_kwargs):
        output = self.model.generate(
            pixel_values=model_inputs["pixel_values"], return_dict_in_generate=True, **generate_kwargs
        )
        return {"sequences": output.sequences, "char_confidences": output.char_confidences}

    def postprocess(self, model_outputs, return_confidence=False):
        decoded = self.processor.batch_decode(
            model_outputs["sequences"], return_confidences=True, char_confidences=model_outputs["char_confidences"]
        )
        results = []
        for text, confidence in zip(decoded["texts"], decoded["confidences"]):
            result = {"generated_text": text}
            if return_confidence:
                result["score"] = confidence
            results.append(result)
        return results


__all__ = ["CLIP4STRPipeline"]
