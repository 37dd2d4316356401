"""Scoring: prompt × example pairs → token ids (encoding) → packed rows and queries (plan, batching,
prefix reuse) → label-score tables and metrics (the one :class:`~.evaluator.Evaluator`), plus the two
differentiable forwards searchers train through. Only this layer and ``models`` touch the network."""
