"""The sensor that keeps Dagster's stored partition status current for the UI."""

import dagster as dg

from swiftbolt_pipeline.services import partition_status

# Under the daemon's 60 s limit for a sensor tick; a rebuild left over goes on next tick.
BUDGET_S = 40.0


@dg.sensor(
    name="partition_status_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Keeps each partitioned asset's stored partition status (the UI's counts, health bars "
        "and grids) up to date, and rebuilds it from the event log when the partitions changed "
        "(a symbol added to the watchlist, a new universe, a new history start), so the next "
        "page load reads it instead of rebuilding it."
    ),
)
def partition_status_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    if context.repository_def is None:
        return dg.SkipReason("no code location loaded")
    graph = context.repository_def.asset_graph
    partitions = {
        key: node.partitions_def
        for key in graph.materializable_asset_keys
        if (node := graph.get(key)).partitions_def is not None
    }
    done = partition_status.refresh(context.instance, partitions, budget_s=BUDGET_S)
    names = ", ".join(k.to_user_string() for k in done.rebuilt) or "none"
    return dg.SkipReason(
        f"rebuilt {len(done.rebuilt)} asset(s) ({names}), updated {len(done.updated)}, "
        f"{len(done.deferred)} left for the next tick"
    )
