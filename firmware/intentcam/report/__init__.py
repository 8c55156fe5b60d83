"""The store manager's daily report (gateway side, the ``report`` extra; never on a camera).

- :mod:`intentcam.report.source`: the messages of a JSON Lines file (``intentcam tail --json`` or
  ``intentcam run --sink jsonl:``) or collected from a broker;
- :mod:`intentcam.report.day`: one site's day as tables (footfall by hour, occupancy per quarter
  hour, zones, intent and sentiment, heatmaps), cameras merged, names mapped;
- :mod:`intentcam.report.page`: the tables as one self-contained ``index.html`` with a chart above
  each table, a CSV file of each, and the heatmaps on the cameras' plates and the floor plan.
"""
