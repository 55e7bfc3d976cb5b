"""Teachers: modules that give an RL learner advice during training.

Subgoal teachers (Words as Beacons): `SubgoalTeacher` (an LLM), `OracleTeacher`
(scripted from the true state, the upper bound), and the controls `RandomTeacher`
and `FirstOptionTeacher` (always the first listed option: the position-bias baseline).
"""

from llmguide.teachers.base import Proposal, Subgoal, Teacher, TeacherCache, parse_instruction
from llmguide.teachers.oracle import FirstOptionTeacher, OracleTeacher, RandomTeacher
from llmguide.teachers.subgoal import SubgoalTeacher

__all__ = [
    "FirstOptionTeacher",
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

from llmguide.teachers.self_taught import SelfTaughtTeacher

__all__ += ["SelfTaughtTeacher"]
