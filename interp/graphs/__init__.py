"""Attribution graphs (circuit tracing with transcoders): the direct linear effects between transcoder features,
error nodes, token embeddings and logits in a prompt's frozen local replacement model.

- ``replacement``: ``freeze``, the frozen replacement of one prompt (attention patterns and norm scales constant,
  each MLP replaced by its transcoder's output plus an error), linear in the node contributions.
- ``attribution``: ``attribute``, the dense adjacency of direct effects from batched backward passes.
- ``graph``: ``Graph``, the result (nodes, adjacency, logits; figure, save, load).
- ``prune``: ``prune_graph`` (nodes and edges by their influence on the logits), ``compute_graph_scores``
  (replacement and completeness scores), ``node_influence``.
- ``transcoders``: ``load_transcoders`` / ``save_transcoders``, a set of one transcoder per layer on disk;
  ``load_feature_evaluations``, their evaluations by layer (for the figure's hover text).
- ``figure``: the pruned graph drawn over the prompt (``Graph.figure``).
- ``interventions``: ``intervene`` (graph features ablated, clamped or scaled in the real model, alone or as named
  supernodes; the target before and after), ``top_influence_features``, the ``GraphIntervention`` result.

>>> graph = attribute(model, "the quick brown fox", transcoders)             # doctest: +SKIP
>>> graph.adjacency[graph.node_index("logit", index=token_id)]              # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

_EXPORTS = {
    "attribute": "interp.graphs.attribution",
    "Graph": "interp.graphs.graph",
    "Node": "interp.graphs.graph",
    "FrozenReplacement": "interp.graphs.replacement",
    "freeze": "interp.graphs.replacement",
    "PruneResult": "interp.graphs.prune",
    "prune_graph": "interp.graphs.prune",
    "compute_graph_scores": "interp.graphs.prune",
    "node_influence": "interp.graphs.prune",
    "load_transcoders": "interp.graphs.transcoders",
    "load_feature_evaluations": "interp.graphs.transcoders",
    "save_transcoders": "interp.graphs.transcoders",
    "GraphIntervention": "interp.graphs.interventions",
    "intervene": "interp.graphs.interventions",
    "top_influence_features": "interp.graphs.interventions",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from interp.graphs.attribution import attribute
    from interp.graphs.graph import Graph, Node
    from interp.graphs.interventions import GraphIntervention, intervene, top_influence_features
    from interp.graphs.prune import PruneResult, compute_graph_scores, node_influence, prune_graph
    from interp.graphs.replacement import FrozenReplacement, freeze
    from interp.graphs.transcoders import load_feature_evaluations, load_transcoders, save_transcoders

__all__ = [
    "FrozenReplacement",
    "Graph",
    "GraphIntervention",
    "Node",
    "PruneResult",
    "attribute",
    "compute_graph_scores",
    "freeze",
    "intervene",
    "load_feature_evaluations",
    "load_transcoders",
    "node_influence",
    "prune_graph",
    "save_transcoders",
    "top_influence_features",
]
