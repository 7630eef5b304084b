"""Combinatorial solvers: stateless callables ``costs -> solution``, batch first, no gradients."""

from identity_tf.solvers.argmax import Argmax
from identity_tf.solvers.assignment import LinearAssignment
from identity_tf.solvers.base import HostSolver
from identity_tf.solvers.base import Solver
from identity_tf.solvers.graph_matching import GraphMatching
from identity_tf.solvers.graph_matching import induced_edge_matching
from identity_tf.solvers.ilp import IntegerLinearProgram
from identity_tf.solvers.numpy_solver import NumpySolver
from identity_tf.solvers.numpy_solver import from_numpy
from identity_tf.solvers.ranking import Ranking
from identity_tf.solvers.shortest_path import ShortestPath
from identity_tf.solvers.topk import TopK
from identity_tf.solvers.tsp import TSP

__all__ = [
    "Argmax",
    "GraphMatching",
    "HostSolver",
    "IntegerLinearProgram",
    "LinearAssignment",
    "NumpySolver",
    "Ranking",
    "ShortestPath",
    "Solver",
    "TSP",
    "TopK",
    "from_numpy",
    "induced_edge_matching",
]
