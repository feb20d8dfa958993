"""Distances between samples, shared by the training losses and the measurement tools."""
from .adistance import DomainClassifierResult, a_distance_from_error, domain_classifier, proxy_a_distance
from .coral import coral, covariance
from .lmmd import lmmd2
from .mmd import (ESTIMATORS, MULTI_KERNEL, GaussianKernel, joint_mmd2, linear_mmd2, median_sq_dist, mk_mmd2, mmd2,
                  multi_kernel)
from .permutation import MMDTestResult, mmd_test
from .wasserstein import wasserstein

__all__ = ["ESTIMATORS", "MULTI_KERNEL", "DomainClassifierResult", "GaussianKernel", "MMDTestResult",
           "a_distance_from_error", "coral", "covariance", "domain_classifier", "joint_mmd2", "linear_mmd2", "lmmd2",
           "median_sq_dist", "mk_mmd2", "mmd2", "mmd_test", "multi_kernel", "proxy_a_distance", "wasserstein"]
