"""The `sample.pretrained` section (torch-free, as generators.config, which holds it) and
where its model's files are (`missing`, files only: `synthaug check` asks it too); drawing
from the pipeline is generators.pretrained's."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from synthaug.pipeline.core.settings import Section

# a pretrained diffusers pipeline: nothing to train, it draws from per-class prompts (prior:
# text-to-image) or from each real training image (img2img)
PRETRAINED = "pretrained"
PRETRAINED_SAMPLERS = ("prior", "img2img")
MODEL = "sample.pretrained.model"
DOWNLOAD = "sample.pretrained.download"


class PretrainedConfig(Section):
    """`sample.pretrained`: the pretrained diffusers pipeline that sets with `generator:
    pretrained` draw from (Stable Diffusion 1.x/2.x, SD-Turbo, SDXL-Turbo class: anything
    diffusers' AutoPipelineForText2Image loads; img2img shares its weights). Its images
    are made at `resolution`, then resized to prepare.size and the data set's channels."""

    model: str = Field("", description=(
        "a local pipeline folder (diffusers' save_pretrained layout) or a Hugging Face Hub id, "
        "e.g. stable-diffusion-v1-5/stable-diffusion-v1-5; required by pretrained sets"))
    download: bool = Field(False, description=(
        "fetch a Hub id's weights when they are not in the local Hugging Face cache (needs the "
        "network); false: local files only"))
    variant: str | None = Field(None, description=(
        "the weight files' variant to load, e.g. fp16 (smaller downloads); null: the default"))
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description=(
        "auto: float16 on CUDA and MPS, float32 on a CPU"))
    resolution: PositiveInt = Field(512, multiple_of=8, description=(
        "side of the pipeline's images (512 for SD 1.x/2-base and the Turbo models); real "
        "images are resized up to it for img2img"))
    prompt: str = Field("a photo of a {name}", description=(
        "the prompt of each class; {name} is the class name"))
    prompts: dict[str, str] = Field(default={}, description=(
        "class name -> its own prompt (overrides `prompt`)"))
    negative_prompt: str = Field("", description="what the images should not show")
    guidance_scale: float = Field(7.5, ge=0.0, description=(
        "classifier-free guidance (7.5 as DA-Fusion; 0 for the Turbo models)"))
    steps: PositiveInt = Field(30, description=(
        "denoising steps (img2img runs strength x steps of them)"))
    batch_size: PositiveInt = Field(8, description=(
        "images per pipeline call (GPU memory: about 1 GB per image at 512 px in float16)"))
    safety_checker: bool = Field(True, description=(
        "keep the pipeline's own safety checker, where it has one (it blacks out images it "
        "flags; their manifest rows say `flagged`)"))

    @model_validator(mode="after")
    def _templates(self):
        for key, text in [("prompt", self.prompt), ("negative_prompt", self.negative_prompt),
                          *[(f"prompts.{k}", v) for k, v in self.prompts.items()]]:
            try:
                text.format(name="x")
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"{key}: {text!r} is not a prompt template ({type(e).__name__}: "
                                 f"{e}); write {{name}} for the class name, {{{{ }}}} for braces"
                                 ) from None
        return self


def is_folder(model: str) -> bool:
    """A folder, not a Hub id (`owner/name`): an existing folder, or anything that reads as a
    path (absolute, ./, ../, ~, or more than one /)."""
    return (Path(model).expanduser().is_dir() or model.startswith((".", "/", "~"))
            or model.count("/") > 1 or os.sep != "/" and os.sep in model)


def missing(cfg: PretrainedConfig) -> str | None:
    """Why `cfg.model` cannot be loaded as allowed (one line naming the setting), or None."""
    model = cfg.model
    if not model:
        return f"{MODEL}: empty; name a local pipeline folder or a Hugging Face Hub id"
    if is_folder(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            return f"{MODEL}: folder {folder} not found; name a saved pipeline's folder or a Hub id"
        if not (folder / "model_index.json").is_file():
            return (f"{MODEL}: {folder} is not a diffusers pipeline folder (no model_index.json); "
                    "save one with pipeline.save_pretrained(folder)")
        return None
    if cfg.download:
        return None
    from huggingface_hub import constants, try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(model, "model_index.json"), str):
        return (f"{MODEL}: {model!r} is not a local folder and not in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}); set {DOWNLOAD}: true to fetch it (needs the "
                "network), or name a saved pipeline's folder")
    return None
