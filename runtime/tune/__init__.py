"""Profiles and the automated NanoFlow pipeline search: ``nanolang tune --model M`` profiles a
layer's operations (profiler.py), stores the profile as data (profiles.py), and solves NanoFlow's
two search stages as mixed-integer programs (schedule.py, with Gurobi or HiGHS: milp.py) for
every batch-shape bucket, writing a plan set that ``--mode nanoflow`` picks plans from."""

from runtime.tune.costs import BatchShape, Costs, Layout
from runtime.tune.milp import MilpError, Solver
from runtime.tune.profiles import Interference, ModelShape, OpTiming, Profile, ProfileError
from runtime.tune.search import SearchConfig, ShapeResult, search_plans, search_shape

__all__ = [
    "BatchShape",
    "Costs",
    "Interference",
    "Layout",
    "MilpError",
    "ModelShape",
    "OpTiming",
    "Profile",
    "ProfileError",
    "SearchConfig",
    "ShapeResult",
    "Solver",
    "search_plans",
    "search_shape",
]
