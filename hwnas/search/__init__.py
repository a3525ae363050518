"""Search under a budget: cost models (``costs``), the exact combiner (``combiner``), Optuna refinement with real
measurements (``refine``), the finalists re-measured together (``remeasure``), and the job that chains them on a run
(``budgeted``), whose ``SearchResult`` the CLI and the demo render.
"""
