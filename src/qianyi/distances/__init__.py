"""Distances between samples, shared by the training losses and the measurement tools."""
from .coral import coral, covariance
from .mmd import (ESTIMATORS, MULTI_KERNEL, GaussianKernel, joint_mmd2, linear_mmd2, median_sq_dist, mk_mmd2, mmd2,
                  multi_kernel)

__all__ = ["ESTIMATORS", "MULTI_KERNEL", "GaussianKernel", "coral", "covariance", "joint_mmd2", "linear_mmd2",
           "median_sq_dist", "mk_mmd2", "mmd2", "multi_kernel"]
