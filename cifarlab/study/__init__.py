"""`cifarlab study`: every step of a study, in order, into one folder and its report.

run.py             run_study: the steps, their runs, the summary
spec.py            study specs: what a study runs (a YAML file or the original)
spec_checks.py     the checks of a spec's parts, each error naming where it is
report.py          the study's report: every step's figure and table beside the published
evidence.py        each claim that one setting beats another, with its statistics
failures.py        where one model fails and how the models bear corruptions
search_section.py  the report's section on a spec's hyperparameter search
analysis.py        the dataset analysis (`cifarlab analyze`, the study's first steps)
wording.py         how reports name models, recipes and commands
findings.py        the report's summary of findings, conclusions and Reproduce section
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "run_study": "run",
        "StudySpec": "spec",
        "ModelPlan": "spec",
        "read_spec": "spec",
        "analyze": "analysis",
    },
)
