"""torchxrayvision DenseNet weights -> ``densenet121_triage`` (14 NIH outputs).

torchxrayvision's DenseNet predicts 18 pathologies in ``xrv.datasets.default_pathologies``
order; radclip's 14 are the NIH subset in :data:`~radclip.io.labels.NIH_LABELS` order. The
conversion keeps every backbone tensor as is (the module layout is identical) and picks the
14 classifier rows by name.

:func:`load_xrv_pretrained` is the only online path: it asks torchxrayvision to download (or reuse
from its own cache) a named weight set, and runs only when a user explicitly requests it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from radclip.io.labels import NIH_LABELS
from radclip.models.card import ModelCard, Preprocessing

if TYPE_CHECKING:
    import torch

    from radclip.models.triage import DenseNetTriage

# torchxrayvision.datasets.default_pathologies (copied so conversion needs no torchxrayvision import)
XRV_PATHOLOGIES: tuple[str, ...] = (
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis", "Effusion", "Pneumonia",
    "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia", "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum",
)  # fmt: skip
XRV_WEIGHT_SETS = ("densenet121-res224-nih", "densenet121-res224-all", "densenet121-res224-chex", "densenet121-res224-pc", "densenet121-res224-mimic_nb")


def nih_row_indices(pathologies: tuple[str, ...] | list[str] = XRV_PATHOLOGIES) -> list[int]:
    """Rows of an xrv classifier that give NIH_LABELS, in radclip order."""
    missing = [lab for lab in NIH_LABELS if lab not in pathologies]
    if missing:
        raise ValueError(f"the xrv output list lacks {missing}; cannot map it onto the 14 NIH labels")
    return [list(pathologies).index(lab) for lab in NIH_LABELS]


def convert_xrv_state_dict(state: dict[str, torch.Tensor], pathologies: tuple[str, ...] | list[str] = XRV_PATHOLOGIES) -> dict[str, torch.Tensor]:
    """An xrv DenseNet state dict -> a ``densenet121_triage`` state dict (14 classifier rows, no op_threshs)."""
    rows = nih_row_indices(pathologies)
    out = {k: v for k, v in state.items() if not k.startswith("classifier.") and k != "op_threshs"}
    if "classifier.weight" not in state:
        raise ValueError("not a torchxrayvision DenseNet state dict: no 'classifier.weight'")
    out["classifier.weight"] = state["classifier.weight"][rows].clone()
    out["classifier.bias"] = state["classifier.bias"][rows].clone()
    return out


def xrv_op_thresholds(xrv_model: Any) -> dict[str, float] | None:
    """The xrv model's operating points for the 14 NIH labels (NaN ones dropped), if it has any."""
    th = getattr(xrv_model, "op_threshs", None)
    if th is None:
        return None
    names = list(getattr(xrv_model, "pathologies", XRV_PATHOLOGIES))
    vals = {lab: float(th[names.index(lab)]) for lab in NIH_LABELS if lab in names}
    return {k: v for k, v in vals.items() if v == v}


def from_xrv_model(xrv_model: Any) -> DenseNetTriage:
    """Build ``densenet121_triage`` carrying the weights of an in-memory xrv DenseNet."""
    from radclip.models.triage import densenet121_triage

    model = densenet121_triage()
    names = tuple(getattr(xrv_model, "pathologies", XRV_PATHOLOGIES))
    state = convert_xrv_state_dict(xrv_model.state_dict(), names)
    model.load_state_dict(state, strict=True)
    return model.eval()


def xrv_card(weights: str) -> ModelCard:
    """A card describing an xrv-derived model (preprocessing: 224 px, xrv scaling, 1 channel)."""
    return ModelCard(
        name=f"xrv-{weights}",
        architecture="densenet121_triage",
        version="xrv",
        task="triage",
        labels=list(NIH_LABELS),
        preprocessing=Preprocessing(input_size=224, scale="xrv", in_chans=1, mean=(0.0,), std=(1.0,)),
        license="Apache-2.0 (torchxrayvision); see its model card for data terms",
        source=f"torchxrayvision weights {weights!r}, converted by radclip.models.xrv_adapter (18 -> 14 outputs)",
        init_weights=f"torchxrayvision {weights}",
        notes=["outputs are raw logits; torchxrayvision's op_threshs normalisation is not applied"],
    )


def load_xrv_pretrained(weights: str = "densenet121-res224-nih") -> tuple[DenseNetTriage, ModelCard]:
    """ONLINE: fetch ``weights`` through torchxrayvision's own download/cache, convert, return (model, card)."""
    if weights not in XRV_WEIGHT_SETS:
        raise ValueError(f"unknown torchxrayvision weight set {weights!r}; choose one of {XRV_WEIGHT_SETS}")
    try:
        import torchxrayvision as xrv
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("torchxrayvision is needed for --weights; pip install torchxrayvision") from exc
    xrv_model = xrv.models.DenseNet(weights=weights)  # downloads to ~/.torchxrayvision unless cached
    model = from_xrv_model(xrv_model)
    card = xrv_card(weights)
    op = xrv_op_thresholds(xrv_model)
    if op:
        card.calibration = {"xrv_op_thresholds": op}
    return model, card
