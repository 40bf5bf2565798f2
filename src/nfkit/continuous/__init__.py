"""Continuous normalizing flows (ODE flows) and flow-matching training."""

from nfkit.continuous.cnf import ContinuousFlow, exact_divergence, hutchinson_divergence
from nfkit.continuous.matching import FlowMatchingObjective, fit_flow_matching, ot_pairing

__all__ = [
    "ContinuousFlow",
    "FlowMatchingObjective",
    "exact_divergence",
    "fit_flow_matching",
    "hutchinson_divergence",
    "ot_pairing",
]
