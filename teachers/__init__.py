"""Teachers: modules that give an RL learner advice during training.

Subgoal teachers (Words as Beacons): `SubgoalTeacher` (an LLM), `OracleTeacher`
(scripted from the true state, the upper bound), `RandomTeacher` (the control).
"""

from llmguide.teachers.base import Proposal, Subgoal, Teacher, TeacherCache, parse_instruction
from llmguide.teachers.oracle import OracleTeacher, RandomTeacher
from llmguide.teachers.subgoal import SubgoalTeacher

__all__ = [
    "OracleTeacher",
    "Proposal",
    "RandomTeacher",
    "Subgoal",
    "SubgoalTeacher",
    "Teacher",
    "TeacherCache",
    "parse_instruction",
]

from llmguide.teachers.rladapter import RLAdapterTeacher  # noqa: E402

__all__ += ["RLAdapterTeacher"]
