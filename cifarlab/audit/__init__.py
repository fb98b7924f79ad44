"""What is in the data: near-duplicates across splits and likely label errors, and the
test accuracy without them (`cifarlab audit RUN`).

    run.py         audit_run: the command, its files (duplicates.csv, label_issues.csv, audit.json)
    features.py    what images are compared by: the model's penultimate features, or pixels
    neighbours.py  exact nearest neighbours by cosine distance, in chunks
    labels.py      likely label errors by confident learning (cleanlab), K-fold on training
    figures.py     the pairs and the flagged images, for a person to judge
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(__name__, {"audit_run": "run", "summary_lines": "run"})
