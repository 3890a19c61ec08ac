"""What turns the package into a workbook: graded exercises, student copies, batch grading, notebook helpers.

grading.py   `check("nb05.q1")` in a notebook; the guarded check that the batch grader trusts
exercises/   one file of checks per notebook (nbNN.py), registered with `@exercise(...)`
nbtools.py   `python -m peftlab.classroom.nbtools student|grade|workbook`: student copies, gradebook, timings
notebook.py  helpers the notebooks call: `show()` prints package code, `pick()` class/fast step counts, sliders
site.py      `python -m peftlab.classroom.site`: the executed workbook as static HTML
"""
