"""Shallow methods by name, so that ``qianyi run tca``, ``qianyi bench --methods tca,jda,dan`` and
``qianyi select`` treat them like the deep ones.

A shallow method trains no network: it fits a :mod:`qianyi.shallow` estimator on the flattened
source inputs with their labels and the unlabelled target inputs, then a classifier (``classifier``:
``1nn``, the protocol of the TCA/JDA papers, or ``logreg``) on the adapted source features. The
engine never sees it; :func:`qianyi.train.run.run` dispatches it to :func:`fit_predictor`.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from .base import Method
from .registry import register

CLASSIFIERS = ("1nn", "logreg")


def _classifier(name: str, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    if name == "1nn":
        return KNeighborsClassifier(n_neighbors=1)
    if name == "logreg":
        return LogisticRegression(C=1.0, max_iter=5000, random_state=seed)
    raise ConfigError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {name!r}")


class _Mapped:
    """A fitted feature map for source and target, then a classifier on the mapped source. ``adapter``: the
    fitted estimator behind the maps when they are not its bound methods (``qianyi run`` saves the fitted
    arrays of every estimator the predictor holds)."""

    def __init__(self, source_map: Any, target_map: Any, clf: Any, adapter: Any = None) -> None:
        self.source_map, self.target_map, self.clf, self.adapter = source_map, target_map, clf, adapter

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.clf.predict(self.target_map(X))


class ShallowMethod(Method):
    """Base of the shallow methods: ``fit_predictor(Xs, ys, Xt, seed)`` returns a fitted predictor of
    target samples (``predict(X)``); ``fitted_arrays()`` what it learnt, as plain arrays."""

    shallow: ClassVar[bool] = True
    #: the :mod:`qianyi.shallow` estimator it fits (its docstring holds the equation, the conventions and
    #: every departure from the paper; ``qianyi methods NAME`` prints it)
    estimator: ClassVar[str | None] = None

    def fit_predictor(self, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, seed: int) -> Any:
        raise NotImplementedError

    def check_hparams(self) -> None:
        super().check_hparams()
        if getattr(self, "classifier", "1nn") not in CLASSIFIERS:
            raise ConfigError(f"{self.name}: classifier must be one of {', '.join(CLASSIFIERS)}, "
                              f"got {self.classifier!r}")

    def _mapped(self, transformer: Any, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, seed: int,
                source_only_transform: bool = False) -> _Mapped:
        transformer.fit(Xs, Xt=Xt)
        zs = transformer.transform(Xs)
        clf = _classifier(self.classifier, seed).fit(zs, ys)
        target_map = (lambda X: X) if source_only_transform else transformer.transform
        return _Mapped(transformer.transform, target_map, clf)


@register
class NoAdaptation(ShallowMethod):
    """No adaptation, shallow: the classifier (1-NN by default) on the source features as they are."""

    name = "knn"

    def __init__(self, classifier: str = "1nn") -> None:
        super().__init__()
        self.classifier = classifier

    def fit_predictor(self, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, seed: int) -> Any:
        return _Mapped(lambda X: X, lambda X: X, _classifier(self.classifier, seed).fit(Xs, ys))


@register
class TCAMethod(ShallowMethod):
    """TCA (Pan et al., IEEE TNN 2011): a kernel embedding whose source and target means match; then 1-NN.
    ``mu`` weighs the regulariser, as ``lambda`` in Long et al.'s code (TCA.m), not Pan et al.'s ``mu`` (on the
    MMD term): ``mu_Pan = 1 / (mu (1/n_s + 1/n_t))``, so a larger ``mu`` aligns less."""

    name = "tca"
    estimator = "TCA"
    grid = ({"n_components": 30, "mu": 1.0}, {"n_components": 30, "mu": 0.1}, {"n_components": 100, "mu": 1.0})

    def __init__(self, n_components: int = 30, kernel: str = "primal", mu: float = 1.0, gamma: float = 1.0,
                 classifier: str = "1nn") -> None:
        super().__init__()
        self.n_components, self.kernel, self.mu, self.gamma, self.classifier = n_components, kernel, mu, gamma, classifier

    def fit_predictor(self, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, seed: int) -> Any:
        from ..shallow import TCA

        tca = TCA(n_components=self.n_components, kernel=self.kernel, mu=self.mu, gamma=self.gamma, random_state=seed)
        return self._mapped(tca, Xs, ys, Xt, seed)


@register
class JDAMethod(ShallowMethod):
    """JDA (Long et al., ICCV 2013): TCA plus class-conditional means through target pseudo-labels; then 1-NN."""

    name = "jda"
    estimator = "JDA"

    def __init__(self, n_components: int = 100, kernel: str = "primal", mu: float = 1.0, gamma: float = 1.0,
                 n_iter: int = 10, classifier: str = "1nn") -> None:
        super().__init__()
        self.n_components, self.kernel, self.mu, self.gamma = n_components, kernel, mu, gamma
        self.n_iter, self.classifier = n_iter, classifier

    def fit_predictor(self, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, seed: int) -> Any:
        from ..shallow import JDA

        jda = JDA(n_components=self.n_components, kernel=self.kernel, mu=self.mu, gamma=self.gamma,
                  n_iter=self.n_iter, estimator=_classifier(self.classifier, seed), random_state=seed)
        return jda.fit(Xs, ys, Xt=Xt)


@register
class SAMethod(ShallowMethod):
    """Subspace alignment (Fernando et al., ICCV 2013): the source PCA basis aligned to the target's; then 1-NN."""

    name = "sa"
    estimator = "SubspaceAlignment"

    def __init__(self, n_components: int = 20, classifier: str = "1nn") -> None:
        super().__init__()
        self.n_components, self.classifier = n_components, classifier

    def fit_predictor(self, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, seed: int) -> Any:
        from ..shallow import SubspaceAlignment

        sa = SubspaceAlignment(n_components=self.n_components).fit(Xs, Xt=Xt)
        clf = _classifier(self.classifier, seed).fit(sa.transform(Xs, sample_domain=np.ones(len(Xs))), ys)
        return _Mapped(None, lambda X: sa.transform(X, sample_domain=-np.ones(len(X))), clf, adapter=sa)


@register
class CORALShallow(ShallowMethod):
    """CORAL (Sun et al., AAAI 2016): re-colour the source with the target covariance, train on it,
    classify the target as it is; then 1-NN (the deep variant is ``coral``)."""

    name = "coral-shallow"
    estimator = "CORAL"

    def __init__(self, reg: float = 1.0, classifier: str = "1nn") -> None:
        super().__init__()
        self.reg, self.classifier = reg, classifier

    def fit_predictor(self, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, seed: int) -> Any:
        from ..shallow import CORAL

        return self._mapped(CORAL(reg=self.reg), Xs, ys, Xt, seed, source_only_transform=True)


@register
class KMMMethod(ShallowMethod):
    """KMM (Huang et al., NIPS 2007): source samples weighted by kernel mean matching; then a weighted
    classifier (``logreg`` by default: 1-NN takes no weights)."""

    name = "kmm"
    estimator = "KMM"

    def __init__(self, gamma: float = 1.0, classifier: str = "logreg") -> None:
        super().__init__()
        self.gamma, self.classifier = gamma, classifier

    def fit_predictor(self, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, seed: int) -> Any:
        from ..shallow import KMM, KMMClassifier

        return KMMClassifier(estimator=_classifier(self.classifier, seed),
                             kmm=KMM(gamma=self.gamma, random_state=seed)).fit(Xs, ys, Xt=Xt)

    def check_hparams(self) -> None:
        super().check_hparams()
        if self.classifier == "1nn":
            raise ConfigError("kmm: 1-NN takes no sample weights; use classifier=logreg")
