"""Shallow transfer learning as scikit-learn estimators: feature maps, sample weights and boosting
that need no network.

* :class:`TCA` -- kernel embedding matching the domains' means; ``fit(Xs, Xt)``, ``transform``
* :class:`JDA` -- TCA plus class-conditional means via target pseudo-labels; ``fit(Xs, ys, Xt)``,
  ``transform``, ``predict``
* :class:`CORAL` -- re-colours the source with the target covariance; ``fit(Xs, Xt)``, ``transform``
* :class:`SubspaceAlignment` -- aligns the source PCA basis with the target's; ``fit(Xs, Xt)``, ``transform``
* :class:`KMM` -- importance weights of source samples (kernel mean matching); ``fit(Xs, Xt)``, ``weights_``
* :class:`KMMClassifier` -- any classifier fitted with KMM weights; ``fit(Xs, ys, Xt)``, ``predict``
* :class:`TrAdaBoost` -- boosting over source and a few labelled target samples; ``fit(Xs, ys, Xt, yt)``
* :class:`FeatureAugmentation` -- Daume III's ``[x, x, 0]`` / ``[x, 0, x]``; ``fit_transform(X, sample_domain=sd)``
* :class:`AugmentedClassifier` -- any classifier on augmented features; ``fit(Xs, ys, Xt, yt)``, ``predict``
* :class:`AdaptedClassifier` -- CORAL, SA or TCA then a classifier, as the papers do it (trained on the
  adapted source only, predicting target rows as target rows); ``fit(Xs, ys, Xt=Xt)``, ``predict``

Which rows are target, for every estimator (as :class:`qianyi.DomainAdapter`): ``Xt=`` (and ``yt=``)
next to the source ``X, y``; or ``sample_domain=`` with one entry per row of ``X``, positive for
source and negative for target (skada's convention; for an adapter and a classifier use
:class:`AdaptedClassifier`, not a plain ``Pipeline``, whose classifier would also fit the target rows);
or, for the classifiers with an unlabelled target (:class:`JDA`, :class:`KMMClassifier`,
:class:`AdaptedClassifier`), ``unlabelled=MARKER`` marking target rows of ``y`` (e.g. ``-1``, which works
in ``GridSearchCV`` as is; ``np.nan`` marks the NaN rows). The labels of unlabelled target rows may be
NaN; the source's may not. The unsupervised adapters also accept ``fit(Xs, Xt)``: a 2-D (or more) array
or a sparse matrix in place of ``y`` is the target sample, checked as ``Xt=`` is; a 1-D ``y`` of another
length than ``X`` is an error (one of the same length is labels, ignored). Given no target rows, an
unsupervised adapter adapts the data to itself; :class:`TrAdaBoost` and :class:`AugmentedClassifier` need
labelled target rows and say so.

Inputs with NaN or infinity, sparse matrices (dense data is required), mismatched feature counts, an
empty domain or a target of fewer than two rows raise :class:`qianyi.errors.DataError` naming the input;
out-of-range settings raise :class:`qianyi.errors.ConfigError`.

>>> from qianyi.shallow import TCA, JDA
>>> Z = TCA(n_components=20).fit(Xs, Xt).transform(Xt)                     # doctest: +SKIP
>>> JDA().fit(Xs, ys, Xt).predict(Xt)                                       # doctest: +SKIP
"""
from .alignment import CORAL, SubspaceAlignment
from .augment import AugmentedClassifier, FeatureAugmentation
from .boosting import TrAdaBoost
from .kmm import KMM, KMMClassifier
from .pipeline import AdaptedClassifier
from .tca import JDA, TCA

__all__ = ["AdaptedClassifier", "AugmentedClassifier", "CORAL", "FeatureAugmentation", "JDA", "KMM", "KMMClassifier",
           "SubspaceAlignment", "TCA", "TrAdaBoost"]
