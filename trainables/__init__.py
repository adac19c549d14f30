"""What runs in trials and workers, in five layers; each imports only the layers below it.

=============  ==============================================================  =========================
layer          what it holds                                                   imports
=============  ==============================================================  =========================
``spec``       what can be named and configured: the catalogs, the configs,    no torch, Ray or MLflow
               the datasets' specs and layouts, the run schema
``core``       the torch core: losses, data, models, augmentation,              torch; no Ray or MLflow
               optimisers, features, kNN
``integration`` the Ray and MLflow services a run reports through: session,     Ray, MLflow
               tracking, MLflow searches
``run``        a run: the pretraining loop and its epoch end, evaluation,       all of the above
               checkpoints, the random-init baseline
``launch``     the Ray Tune trial and the Ray Train trainer that start a run   all of the above
=============  ==============================================================  =========================

``tests/test_layers.py`` holds every module of ``trainables`` (and the top folders) to this order.
"""
