"""Published accuracies, shown beside the measured ones as "reported".

Every number is copied from the project's reference notes (``science.md`` §6 and
``batch_tables.md`` in ``shared/docs``), which cite the original sources; nothing here is
measured. What a report prints names the original source only: its reader has not the notes. Each entry keeps the provenance tag of those notes:

    T  printed in a table of the cited source
    A  stated in an abstract or in running text of the source
    Q  quoted by a third party from the original source
    F  read off a figure, not a table (who did the reading is in ``source``)
    D  derived by arithmetic from other reported numbers

Accuracies are top-1 percentages kept as the printed string, so that the source's number of
decimals survives into the tables.
"""

from __future__ import annotations

from dataclasses import dataclass

PROVENANCE_TAGS: dict[str, str] = {
    "T": "printed in a table of the source",
    "A": "stated in the abstract or text of the source",
    "Q": "quoted by a third party from the source",
    "F": "read off a figure",
    "D": "derived by arithmetic from reported numbers",
}

_DECOUPLED = "DCL: Decoupled Contrastive Learning (Yeh et al. 2022), whose gradient is FlatNCE's (Chen et al. 2021)"
_RECYCLED = "The README's SimCLR checkpoint is one recycled from the DCL/BCL repositories, not re-run"
_NO_MODEL = "No model released for this baseline (the README's link is empty)"


@dataclass(frozen=True)
class ReportedNumber:
    """One published top-1 accuracy and the setting it was obtained in.

    Attributes:
        dataset: Dataset, spelled as this project's ``dataset`` param (``cifar10``, ``stl10``, ...).
        loss: The loss of this project it is compared with (its ``loss`` param).
        method: The method as the source names it.
        accuracy: Top-1 accuracy in percent, exactly as printed.
        tag: Provenance tag, a key of ``PROVENANCE_TAGS``.
        source: Where the number comes from, with the section of the project notes.
        setting: Backbone, protocol and other conditions as the source states them.
        batch_size: Global pretraining batch size, or None where the source does not give it.
        epochs: Pretraining epochs, or None where the source does not give them.
        note: Caveat a reader needs before comparing.
    """

    dataset: str
    loss: str
    method: str
    accuracy: str
    tag: str
    source: str
    setting: str
    batch_size: int | None
    epochs: int | None
    note: str = ""

    @property
    def percent(self) -> float:
        """The accuracy as a number, in percent."""
        return float(self.accuracy)


def _attentionnce_readme(
    dataset: str, method: str, loss: str, epochs: int, accuracy: str, note: str = ""
) -> ReportedNumber:
    return ReportedNumber(
        dataset=dataset,
        loss=loss,
        method=method,
        accuracy=accuracy,
        tag="T",
        source="liubin06/AttentioNCE README",
        setting="ResNet-50, linear probe, best epoch selected on the test set",
        batch_size=256,
        epochs=epochs,
        note=note,
    )


def _debiased_lineage(method: str, loss: str, accuracy: str, source: str) -> ReportedNumber:
    return ReportedNumber(
        dataset="stl10",
        loss=loss,
        method=method,
        accuracy=accuracy,
        tag="T",
        source=source,
        setting="ResNet-50, linear probe (shared code defaults: tau 0.5, Adam 1e-3)",
        batch_size=256,
        epochs=None,
        note="Epochs not printed (code defaults: DCL 500, HCL 400)",
    )


def _batch_sweeps() -> list[ReportedNumber]:
    """SimCLR against DCL at each batch size on CIFAR-10 and CIFAR-100, from two sources: the Decoupled CL
    README's table (single runs) and Lee et al.'s Fig. 4. Each row: a batch size's accuracies, one per column
    of ``columns``."""
    columns = (("cifar10", "infonce"), ("cifar10", "flatnce"), ("cifar100", "infonce"), ("cifar100", "flatnce"))
    readme = {
        32: ("78.3", "84.6", "52.2", "60.1"),
        64: ("81.47", "85.57", "57.76", "60.33"),
        128: ("83.09", "85.63", "58", "61.73"),
        256: ("83.26", "85.36", "59.6", "61.92"),
    }
    figure = {
        32: ("86.4", "87.0", "55.7", "59.0"),
        64: ("87.7", "87.9", "58.1", "60.7"),
        128: ("88.0", "88.4", "58.6", "61.7"),
        256: ("88.2", "88.7", "59.7", "61.4"),
        512: ("88.5", "88.6", "59.4", "61.0"),
    }
    sources = [  # rows, SimCLR's name there, tag, source, setting, pretraining epochs
        (readme, "SimCLR (cross entropy)", "T", "raminnakhli/Decoupled-Contrastive-Learning README",
         "ResNet-18, tau 0.1, Adam 1e-3, 100-epoch linear probe; single runs", 100),
        (figure, "SimCLR", "F", "Lee et al. ICML 2025, Fig. 4, read by a chart transcription",
         "ResNet-18 (CIFAR stem), SGD lr 0.3*B/256, tau tuned per method, 200-epoch linear probe", 200),
    ]
    return [
        ReportedNumber(
            dataset=dataset,
            loss=loss,
            method=simclr if loss == "infonce" else "DCL",
            accuracy=row[column],
            tag=tag,
            source=source,
            setting=setting,
            batch_size=batch_size,
            epochs=epochs,
            note=_DECOUPLED if loss == "flatnce" else "",
        )
        for rows, simclr, tag, source, setting, epochs in sources
        for column, (dataset, loss) in enumerate(columns)
        for batch_size, row in rows.items()
    ]


def _imagenet_decoupled() -> list[ReportedNumber]:
    def entry(loss: str, accuracy: str, tag: str, source: str, setting: str, epochs: int, note: str) -> ReportedNumber:
        return ReportedNumber(
            dataset="imagenet",
            loss=loss,
            method="SimCLR + DCL" if loss == "flatnce" else "SimCLR",
            accuracy=accuracy,
            tag=tag,
            source=source,
            setting=setting,
            batch_size=256,
            epochs=epochs,
            note=note,
        )

    paper = "Yeh et al., Decoupled Contrastive Learning, arXiv 2110.06848"
    quoted = f"{paper}, quoted in lightly PR #1302"
    inferred = "Batch 256 inferred, not stated in the quote"
    return [
        entry("infonce", "57.5", "Q", quoted, "linear eval", 100, inferred),
        entry("flatnce", "64.6", "Q", quoted, "linear eval", 100, f"{inferred}. {_DECOUPLED}"),
        entry("infonce", "61.8", "D", paper, "linear eval; 68.2 - 6.4 = 66.9 - 5.1", 200, ""),
        entry("flatnce", "66.9", "A", f"{paper}, abstract", "linear eval", 200, _DECOUPLED),
    ]


def _simclr_cifar10() -> list[ReportedNumber]:
    def entry(accuracy: str, tag: str, source: str, setting: str, batch_size: int, epochs: int) -> ReportedNumber:
        return ReportedNumber(
            dataset="cifar10",
            loss="infonce",
            method="SimCLR",
            accuracy=accuracy,
            tag=tag,
            source=source,
            setting=setting,
            batch_size=batch_size,
            epochs=epochs,
        )

    figure = "SimCLR's CIFAR-10 batch-size figure, read by a user in {}"
    return [
        entry("94.0", "A", "Chen et al., SimCLR, arXiv 2002.05709, App. B.9",
              "ResNet-50 (CIFAR stem), LARS, linear eval; best model", 1024, 1000),
        entry("85", "F", figure.format("google-research/simclr#124"), "ResNet-50 (CIFAR stem), linear eval", 1024, 100),
        entry("93", "F", figure.format("Spijkervet/SimCLR#12"), "ResNet-50 (CIFAR stem), linear eval; \"about 93%\"",
              256, 500),
        entry("90.66", "T", "Optimization-AI/SogCLR CIFAR branch README",
              "ResNet-50, LARS, wd 1e-4, tau 0.3", 64, 400),
    ]


REPORTED: tuple[ReportedNumber, ...] = (
    _attentionnce_readme("cifar10", "SimCLR", "infonce", 400, "91.12", _RECYCLED),
    _attentionnce_readme("cifar10", "AttentioNCE (d_pos 1, d_neg 10)", "attentionnce", 200, "92.42"),
    _attentionnce_readme("cifar10", "AttentioNCE (d_pos 1, d_neg 10)", "attentionnce", 400, "93.08"),
    _attentionnce_readme("stl10", "SimCLR", "infonce", 400, "80.15", _RECYCLED),
    _attentionnce_readme("stl10", "AttentioNCE (d_pos 2, d_neg 0.5)", "attentionnce", 200, "87.12"),
    _attentionnce_readme("stl10", "AttentioNCE (d_pos 2, d_neg 0.5)", "attentionnce", 400, "89.45"),
    _attentionnce_readme("cifar100", "SimCLR", "infonce", 400, "66.55", _NO_MODEL),
    _attentionnce_readme("cifar100", "AttentioNCE (d_pos 1, d_neg 10)", "attentionnce", 200, "69.78"),
    _attentionnce_readme("cifar100", "AttentioNCE (d_pos 1, d_neg 10)", "attentionnce", 400, "70.23"),
    _debiased_lineage("Debiased CL (tau+ 0.05)", "dcl", "81.85", "chingyaoc/DCL README"),
    _debiased_lineage("Debiased CL (tau+ 0.1)", "dcl", "84.26", "chingyaoc/DCL and joshr17/HCL READMEs"),
    _debiased_lineage("HCL (beta 1.0, tau+ 0.1)", "hcl", "87.44", "joshr17/HCL image/README"),
    *_batch_sweeps(),
    *_simclr_cifar10(),
    *_imagenet_decoupled(),
)
