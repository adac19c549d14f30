"""Which trials a table cell reports, chosen on validation, and their values per seed.

Every table cell is a group of trials (say, one loss at one batch size). Only completed trials
count. A study usually sweeps more than the table's two axes (lr, M, ...), so a cell can hold
several configurations; the one with the best mean validation accuracy of its evaluation is
shown, so that the test set never chooses, and the footnotes say which one was chosen.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis import load
from analysis.labels import format_value, loss_order
from trainables.spec import run_schema as rs
from trainables.spec.losses import HYPERPARAMETERS, hyperparameter_names

# Hyperparameters that may vary inside one cell, with the symbols that name them in footnotes:
# run_schema's config params, then logged params outside it (the losses' own hyperparameters
# and optimiser settings a study may sweep).
CONFIG_SYMBOLS: dict[str, str] = {
    rs.P_LOSS: "loss",
    rs.P_DATASET: "dataset",
    rs.P_BACKBONE: "backbone",
    rs.P_BATCH_SIZE: "B",
    rs.P_VIEWS: "M",
    rs.P_VIEWS_PER_IMAGE: "V",
    rs.P_LR: "lr",
    rs.P_LR_SCALING: "lr scaling",
    rs.P_OPTIMIZER: "optimizer",
    rs.P_TEMPERATURE: HYPERPARAMETERS[rs.P_TEMPERATURE].symbol,
    rs.P_EPOCHS: "epochs",
    load.ENCODER_PASSES: "V·epochs",
    **{load.EXTRA_PARAM_PREFIX + name: HYPERPARAMETERS[name].symbol for name in hyperparameter_names() if name != rs.P_TEMPERATURE},
    load.EXTRA_PARAM_PREFIX + "weight_decay": "wd",
    load.EXTRA_PARAM_PREFIX + "schedule": "schedule",
}
CONFIG_COLUMNS = tuple(column for column in CONFIG_SYMBOLS if column != load.ENCODER_PASSES)

_CONFIG_KEY = "_config"
_MEAN_VAL = "_mean_val"


def selected_trials(
    trials: pd.DataFrame, by: list[str], metric: str, describe: tuple[str, ...] = ()
) -> pd.DataFrame:
    """The trials each cell reports: completed, evaluated, of the validation-selected config.

    Within each group of ``by``, trials are grouped by the remaining ``CONFIG_COLUMNS``; the
    configuration with the highest mean ``best_val_acc`` wins (ties: more seeds, then the first
    in sort order). A configuration with no validation accuracy ranks last.

    Args:
        trials: Frame from ``load_study``.
        by: Columns that define a cell.
        metric: The accuracy column the cell reports; trials without it are not counted.
        describe: Config columns to name in ``config`` even where they do not vary in a cell.

    Returns:
        The chosen trials, with ``n_configs`` (configurations the cell held) and ``config``
        (the chosen values of the config columns that varied within the cell, as text).
    """
    usable = trials[(trials[load.STATUS] == rs.STATUS_COMPLETED) & trials[metric].notna()]
    if usable.empty:
        return usable.assign(n_configs=pd.Series(dtype="int64"), config=pd.Series(dtype="str"))
    config = [column for column in CONFIG_COLUMNS if column not in by and column in trials.columns]
    shown = _shown_columns(usable, by, config, describe)
    keyed = usable.assign(**{_CONFIG_KEY: usable[config].map(str).agg("|".join, axis=1)})
    selected = keyed.merge(_best_configs(keyed, by, metric), on=[*by, _CONFIG_KEY])
    selected["config"] = [_describe(trial, shown.loc[trial[load.RUN_ID]]) for _, trial in selected.iterrows()]
    return selected.drop(columns=_CONFIG_KEY)


def seed_values(selected: pd.DataFrame, metric: str) -> pd.Series:
    """Per trial's seed, the metric (averaged where a seed ran more than once), indexed by seed."""
    return selected.groupby(rs.P_SEED)[metric].mean()


def summarize(
    trials: pd.DataFrame, by: list[str], metric: str, describe: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Mean, std and seed count of ``metric`` per cell, over the seeds of the selected config.

    Every cell that has any trial (of any status) appears; cells without a usable trial have
    n = 0 and NaN statistics. A seed that ran more than once counts once, with its mean.

    Args:
        trials: Frame from ``load_study``.
        by: Columns that define a cell.
        metric: The accuracy column to summarize.
        describe: Config columns always named in ``config`` (see ``selected_trials``).

    Returns:
        Columns ``by`` + mean, std, n, n_configs, config, device_hours (mean per trial) and
        ``seeds`` (the per-seed values, a Series indexed by seed), sorted by ``by`` with losses
        in ``LOSS_LABELS`` order.
    """
    selected = selected_trials(trials, by, metric, describe)
    rows = []
    for key, cell in selected.groupby(by, dropna=False):
        seeds = seed_values(cell, metric)
        rows.append({
            **dict(zip(by, key)),
            "mean": seeds.mean(),
            "std": seeds.std(),
            "n": len(seeds),
            "n_configs": cell["n_configs"].iloc[0],
            "config": cell["config"].iloc[0],
            "device_hours": cell[rs.M_DEVICE_HOURS].mean(),
            "seeds": seeds,
        })
    columns = [*by, "mean", "std", "n", "n_configs", "config", "device_hours", "seeds"]
    aggregated = pd.DataFrame(rows, columns=columns).astype({column: trials[column].dtype for column in by})
    summary = trials[by].drop_duplicates().merge(aggregated, on=by, how="left")
    summary["n"] = summary["n"].fillna(0).astype("int64")
    summary["n_configs"] = summary["n_configs"].fillna(0).astype("int64")
    summary["config"] = summary["config"].fillna("").astype(str)
    summary["seeds"] = [value if isinstance(value, pd.Series) else _NO_SEEDS for value in summary["seeds"]]
    return _sorted(summary, by)


_NO_SEEDS = pd.Series(dtype="float64")


def _best_configs(keyed: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Per cell, the config key with the best mean validation accuracy, and how many there were."""
    ranked = (
        keyed.groupby([*by, _CONFIG_KEY], dropna=False)
        .agg(**{_MEAN_VAL: (rs.M_BEST_VAL_ACC, "mean"), "_n": (metric, "size")})
        .reset_index()
    )
    ranked[_MEAN_VAL] = ranked[_MEAN_VAL].fillna(-math.inf)
    ranked = ranked.sort_values([_MEAN_VAL, "_n", _CONFIG_KEY], ascending=[False, False, True])
    counts = ranked.groupby(by, dropna=False).size().rename("n_configs").reset_index()
    return ranked.drop_duplicates(by)[[*by, _CONFIG_KEY]].merge(counts, on=by)


def _shown_columns(
    usable: pd.DataFrame, by: list[str], config: list[str], describe: tuple[str, ...]
) -> pd.DataFrame:
    """Per trial (indexed by run id), which config columns its cell's description names."""
    grouped = usable.groupby(by, dropna=False)
    # V follows from M and the loss, so naming it beside M adds nothing.
    named = [column for column in config if column != rs.P_VIEWS_PER_IMAGE]
    varies = {column: grouped[column].transform("nunique", dropna=False) > 1 for column in named}
    shown = pd.DataFrame({column: flags | (column in describe) for column, flags in varies.items()})
    return shown.set_axis(usable[load.RUN_ID].to_numpy())


def _describe(trial: pd.Series, shown: pd.Series) -> str:
    return ", ".join(f"{CONFIG_SYMBOLS[column]}={_setting(trial[column])}" for column in shown.index[shown])


def _setting(value: object) -> str:
    """A config value; one that was never set (a loss's own default) reads ``default``."""
    return "default" if pd.isna(value) else format_value(value)


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    rank = {loss: position for position, loss in enumerate(loss_order(frame[rs.P_LOSS]))}
    return frame.sort_values(
        by, key=lambda column: column.map(rank) if column.name == rs.P_LOSS else column, ignore_index=True
    )
