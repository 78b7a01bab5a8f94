"""Metric providers of the live analysis: adapters that fetch numbers, and decide nothing.

Each provider turns one check of ``spec.promotion.analysis`` into a
:class:`~rewardops_operator.core.observations.CheckMeasurement`; the pure core
(:mod:`rewardops_operator.core.analysis`) compares the numbers with the check's limits.
"""
