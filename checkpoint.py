"""
Checkpoints: one file per stage, weights only. torch.load(weights_only=True) never runs code, and whatever is
missing, foreign, damaged or of the wrong stage is one CheckpointError naming the file.

  stage 1 (train_inr.py)        model (latent table + decoder, its normalization buffers), optimizer, model_args
                                (INRConfig), args, step, history, skeleton, sequences (names, fps, durations,
                                captions, actions, the data fingerprint)
  stage 2 (train_diffusion.py)  model (LatentDiffusion), optimizer, model_args (DiffusionConfig), args, step,
                                actions, durations, and inr = decoder_payload(stage 1): sample.py needs nothing else
"""
import os

import torch

import guard
import nerm


class CheckpointError(guard.UserError):
    """A checkpoint that is missing, unreadable or of the wrong kind: the message names the file."""


def save(obj, path):
    """torch.save through guard.write: a temp file beside path, then one rename (a crash never leaves a half-written
    checkpoint); path must have been claimed by the script (guard.claim)."""
    guard.write(path, lambda tmp: torch.save(obj, tmp))


def load_file(path, what="nerm checkpoint"):
    """torch.load(weights_only=True) of a file on the CPU; CheckpointError naming it when absent, truncated or foreign."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch raises many types; name the file
        raise CheckpointError(f"{path}: not a readable {what} ({type(e).__name__})") from None


def load(path, stage):
    """A stage-1 (train_inr.py) or stage-2 (train_diffusion.py) checkpoint dict; CheckpointError otherwise."""
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("stage") != stage:
        found = ckpt.get("stage") if isinstance(ckpt, dict) else None
        raise CheckpointError(f"{path}: expected a stage-{stage} checkpoint, found {found or 'something else'}")
    need = ("model", "model_args", "optimizer", "args", "step") + (("sequences", "skeleton") if stage == 1 else ("inr", "actions"))
    missing = [k for k in need if k not in ckpt]
    if stage == 1 and not missing:
        missing = [k for k in ("names", "fps", "duration", "captions", "actions") if k not in ckpt["sequences"]]
    if missing:
        raise CheckpointError(f"{path}: a damaged or foreign stage-{stage} checkpoint (no {', '.join(missing)})")
    return ckpt


def decoder_payload(ckpt):
    """What a stage-2 checkpoint carries of the stage-1 checkpoint ckpt, so that sample.py needs nothing
    else: the decoder's config and weights (its normalization buffers included) and the skeleton."""
    decoder = {k[len("decoder."):]: v for k, v in ckpt["model"].items() if k.startswith("decoder.")}
    return {"model_args": ckpt["model_args"], "decoder": decoder, "skeleton": ckpt["skeleton"]}


# settings of experiments that left the code (RESULTS.md names the commit that ran each), at the value that
# meant "off": a checkpoint that has one at that value is the same model without it
RETIRED = {"integrated": False, "activation": "relu", "acc_weight": 0.0, "damp": 0.0}


def inr_config(model_args):
    """The nerm.INRConfig of a checkpoint's model_args; CheckpointError if it used a retired experiment."""
    args = {"gated": False, **model_args}  # written before the detail gate: the paper's ReLU MLP
    used = [f"{k}={model_args[k]!r}" for k, off in RETIRED.items() if args.pop(k, off) != off]
    if used:
        raise CheckpointError(f"this checkpoint uses {', '.join(used)}, an experiment this nerm no longer has")
    return nerm.INRConfig(**args)


def load_decoder(payload, device="cpu"):
    """The nerm.INRDecoder of a decoder_payload(...), in eval mode."""
    if "mean" in payload or "mean" not in payload.get("decoder", {}) or "max_hz" not in payload["model_args"]:
        raise CheckpointError("this checkpoint was written by an older nerm (another time encoding or "
                              "normalization): train it again with train_inr.py and train_diffusion.py")
    decoder = nerm.INRDecoder(inr_config(payload["model_args"])).to(device).eval()
    decoder.load_state_dict(payload["decoder"])
    return decoder


def load_diffusion(path, device="cpu"):
    """(nerm.LatentDiffusion in eval mode, its stage-1 nerm.INRDecoder, the checkpoint dict) of a stage-2 checkpoint, as
    sample.py, eval.py and bench.py use it. Anything missing, foreign or of the wrong shape in it is one
    CheckpointError naming the file (load_state_dict is strict: every weight present, each of its shape)."""
    ckpt = load(path, stage=2)
    try:
        model = nerm.LatentDiffusion(nerm.DiffusionConfig(**ckpt["model_args"])).to(device).eval()
        model.load_state_dict(ckpt["model"])
        decoder = load_decoder(ckpt["inr"], device)
        if not isinstance(ckpt["actions"], list) or len(ckpt["actions"]) < model.config.num_actions:
            raise KeyError("actions")
    except (KeyError, TypeError, ValueError, RuntimeError, AssertionError, AttributeError, guard.UserError) as e:
        raise CheckpointError(f"{path}: a damaged or foreign stage-2 checkpoint "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None
    return model, decoder, ckpt
