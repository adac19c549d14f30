"""Names shared by the code that writes MLflow runs and the code that reads them.

A study is one MLflow tree:

    study run            tag nce.kind=study      (the preset, its overrides, the code version)
    └── trial run        tag nce.kind=pretrain   (one pretraining; params = its config)
        └── eval run     tag nce.kind=linear_eval (one linear / finetune / kNN evaluation)
    └── baseline run     tag nce.kind=baseline, nce.baseline=random_init (an evaluation of a randomly
                         initialised encoder of the trials' architecture, per seed and eval mode; its
                         params are the evaluation's plus the pretraining config's dataset, backbone and
                         seed, its metrics the evaluation's)

Parent links use MLflow's own ``mlflow.parentRunId`` tag, so the MLflow UI nests them.
Every name a writer logs and a reader looks up lives here, so that the two cannot drift.
"""

from __future__ import annotations

# --- tags -------------------------------------------------------------------------------------
PARENT = "mlflow.parentRunId"  # MLflow's own nesting tag
KIND = "nce.kind"  # one of KIND_* below
KIND_STUDY = "study"
KIND_PRETRAIN = "pretrain"
KIND_EVAL = "linear_eval"
KIND_BASELINE = "baseline"  # a child of the study run, evaluated like a trial but never trained
BASELINE = "nce.baseline"  # on baseline runs: which baseline (BASELINE_RANDOM_INIT)
BASELINE_RANDOM_INIT = "random_init"
STUDY = "nce.study"  # the study's stable name, on every run of its tree
TRIAL_ID = "nce.trial_id"  # Ray Tune's trial id, on trial runs
STATUS = "nce.status"  # one of STATUS_* below, on trial runs
STATUS_COMPLETED = "completed"
STATUS_EARLY_STOPPED = "early_stopped"
STATUS_FAILED = "failed"
FAILURE_REASON = "nce.failure_reason"  # one line, on failed runs
CODE_VERSION = "nce.code_version"  # git commit (with "+dirty" when the tree had changes)
PRESET = "nce.preset"  # on study runs
NODE_ID = "nce.node_id"  # the Ray node of world rank 0, on trial runs; a restart elsewhere rewrites it
TRAIN_RUN = "nce.train_run"  # the Ray Train run name (storage folder) of a pretraining run, for --resume
CHECKPOINTS = "nce.checkpoints"  # on a study's trial runs: the folder holding the trial's checkpoints
NOTE = "mlflow.note.content"  # MLflow's own run description (markdown), shown on the run's page
BEST_TRIAL = "nce.best_trial"  # on study runs: the run name of the trial with the best validation accuracy
BEST_TRIAL_RUN_ID = "nce.best_trial_run_id"
# MLflow 3.0-3.16 UIs choose an experiment's layout by this tag; 3.17 by the browser's workflow type
# instead (study/tracking_server.py sets it), so the tag stays for the UIs that read it.
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"  # the experiment declared as model training, not GenAI
RESULTS_VIEW = "results"  # the saved runs-table view every experiment carries: all runs flat, best M_HEADLINE first
TREE_VIEW = "study-tree"  # the same columns, the study tree (MLflow nests runs only when sorted by start time)
TRIALS_VIEW = "trials"  # trial runs alone (TRIALS_FILTER), best first
VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # MLflow UI's saved-view experiment tags: prefix + view id
RESULTS_VIEW_TAG = VIEW_TAG_PREFIX + RESULTS_VIEW

# --- params of a pretraining run (all config fields are logged; these are the ones read back) --
P_LOSS = "loss"
P_VIEWS = "views"  # M: positive views per anchor
P_VIEWS_PER_IMAGE = "views_per_image"  # V: encoder passes per image (M + 1, or M + 2)
P_BATCH_SIZE = "batch_size"  # global batch
P_LR = "lr"  # base learning rate, as given
P_LR_EFFECTIVE = "lr_effective"  # after the lr_scaling rule
P_LR_SCALING = "lr_scaling"
P_OPTIMIZER = "optimizer"
P_TEMPERATURE = "temperature"
P_SEED = "seed"
P_EPOCHS = "epochs"
P_DATASET = "dataset"
P_BACKBONE = "backbone"
P_WORLD_SIZE = "world_size"
P_DEVICE_TYPE = "device_type"  # "cpu" or "cuda"

# --- params of an evaluation run -------------------------------------------------------------
# The pretraining's P_LOSS, P_BATCH_SIZE, P_VIEWS, P_SEED, P_DATASET and P_BACKBONE are repeated
# under the same names; the evaluation's own settings (EvalConfig fields) carry PROBE_PREFIX, so
# that the probe's batch size (probe_batch_size) is never read as the pretraining's.
PROBE_PREFIX = "probe_"
P_PRETRAIN_RUN_ID = "pretrain_run_id"
P_EVAL_MODE = "eval_mode"  # linear | finetune | knn
P_RECIPE = "recipe"  # attentionnce | flatclr (linear and finetune only)
P_CHECKPOINT_EPOCH = "checkpoint_epoch"

# --- per-epoch metrics of a pretraining run (step = epoch, 1-based) -------------------------
M_TRAIN_LOSS = "train_loss"
M_POS_PROB = "pos_prob"  # mean InfoNCE probability of the positive, pi+
M_GRAD_SCALE = "grad_scale"  # mean 1 - pi+: InfoNCE's gradient scale
M_PROTOTYPE_PROB = "prototype_prob"  # AttentionNCE: mean probability of the prototype among beta-rescaled negatives
M_PROTOTYPE_GRAD_SCALE = "prototype_grad_scale"  # AttentionNCE: mean 1 - prototype_prob
M_LR = "lr_now"  # learning rate at the end of the epoch
M_IMAGES_PER_S = "images_per_s"
M_EPOCH_TIME = "epoch_time_s"
M_VAL_KNN = "val_knn_acc"  # kNN accuracy on the held-out validation split
M_ELAPSED = "elapsed_s"  # wall clock of the pretraining up to this epoch's end, earlier attempts included
M_DEVICE_HOURS_ELAPSED = "device_hours_elapsed"  # workers x M_ELAPSED: what reaching this epoch cost (as M_DEVICE_HOURS)

# --- final metrics of a pretraining run ------------------------------------------------------
M_FINAL_VAL_KNN = "final_val_knn_acc"
M_BEST_VAL_KNN = "best_val_knn_acc"
M_WALL_CLOCK = "wall_clock_s"
M_DEVICE_HOURS = "device_hours"  # workers x wall clock, in GPU-hours on GPU (CPU-hours on CPU)
M_EPOCHS_DONE = "epochs_done"

# --- metrics of an evaluation run ------------------------------------------------------------
M_EVAL_VAL_ACC = "val_acc"  # per epoch
M_EVAL_TEST_ACC = "test_acc"  # per epoch (recorded, never used for selection)
M_EVAL_TRAIN_LOSS = "train_loss"  # per epoch
M_TEST_AT_BEST_VAL = "test_acc_at_best_val"  # THE reported number: test accuracy at the val-selected epoch
M_BEST_VAL_ACC = "best_val_acc"
M_BEST_EPOCH = "best_epoch"
M_MAX_TEST_OVER_EPOCHS = "max_test_acc_over_epochs"  # the seeds' test-set-selected number, for comparison only

# --- the headline vocabulary: one key per quantity on every run kind that has it ---------------
# A trial run carries its evaluation's numbers under the evaluation's own keys, and a baseline run
# is an evaluation, so that sorting the runs table by one column puts trials, evaluations and
# baselines in their places. Only these two are copied: a trial's test-set-selected number
# (M_MAX_TEST_OVER_EPOCHS) stays on its evaluation run, out of the trial's columns and charts.
M_HEADLINE = M_TEST_AT_BEST_VAL  # the number a run is ranked by in the tables and the runs table
M_HEADLINE_VAL = M_BEST_VAL_ACC  # the validation accuracy a trial is selected by (never test)
HEADLINE_METRICS = (M_HEADLINE, M_HEADLINE_VAL, M_FINAL_VAL_KNN)  # the runs table's first columns, in order

# --- a study run's copy of its best trial's metrics (best by the evaluation's validation accuracy)
BEST_TRIAL_PREFIX = "best_trial_"

# Keys that stores written before the one vocabulary hold, and what they are now: readers map them
# with :func:`current_metrics`, so that an old study still loads, resumes and reports.
OLD_EVAL_PREFIX = "eval_"  # trial runs once carried every evaluation metric under this prefix
RENAMED_METRICS = {
    OLD_EVAL_PREFIX + M_TEST_AT_BEST_VAL: M_HEADLINE,
    OLD_EVAL_PREFIX + M_BEST_VAL_ACC: M_HEADLINE_VAL,
    BEST_TRIAL_PREFIX + OLD_EVAL_PREFIX + M_TEST_AT_BEST_VAL: BEST_TRIAL_PREFIX + M_HEADLINE,
    BEST_TRIAL_PREFIX + OLD_EVAL_PREFIX + M_BEST_VAL_ACC: BEST_TRIAL_PREFIX + M_HEADLINE_VAL,
}


def current_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """A run's metrics under today's keys: old keys renamed (a key already present under its new name wins)."""
    renamed = {RENAMED_METRICS.get(key, key): value for key, value in metrics.items() if key not in RENAMED_METRICS}
    old = {RENAMED_METRICS[key]: value for key, value in metrics.items() if key in RENAMED_METRICS}
    return old | renamed


# --- the runs-table views every experiment carries (MLflow UI experiment tags, see tracking.py) --
TRIALS_FILTER = f"tags.`{KIND}` = '{KIND_PRETRAIN}'"  # the runs table's search string for trial runs alone

# Artifacts of an evaluation run.
TEST_PREDICTIONS = "test_predictions.npz"  # int16 arrays predictions and labels, one per test image, of the reported epoch
