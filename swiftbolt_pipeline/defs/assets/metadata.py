"""Metadata shared by the bar assets: the table's column schema and a small data preview."""

from datetime import date

import dagster as dg
import psycopg

from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.storage import bars as bar_store

BAR_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("symbol_id", "integer", description="symbols.id"),
        dg.TableColumn("timeframe", "text", description="m15, h1, h4 or d1"),
        dg.TableColumn("ts", "timestamptz", description="bar START, UTC"),
        dg.TableColumn("open", "double precision"),
        dg.TableColumn("high", "double precision"),
        dg.TableColumn("low", "double precision"),
        dg.TableColumn("close", "double precision"),
        dg.TableColumn("volume", "bigint"),
        dg.TableColumn("vwap", "double precision", description="volume-weighted average price"),
        dg.TableColumn("trade_count", "bigint"),
        dg.TableColumn("provider", "text", description="polygon, tradier or alpaca"),
        dg.TableColumn("is_intraday", "boolean", description="today's bars, not yet final"),
        dg.TableColumn("fetched_at", "timestamptz"),
    ]
)

ASSET_METADATA = {
    "dagster/column_schema": BAR_TABLE_SCHEMA,
    "dagster/table_name": "ohlc_bars_v2",
}


def preview(
    conn: psycopg.Connection,
    symbol: str,
    symbol_id: int,
    timeframe: Timeframe,
    days: list[date],
    rows: int = 5,
) -> dg.MetadataValue:
    """The last few stored bars of one symbol, as a markdown table."""
    bars = bar_store.read_bars(conn, symbol_id, timeframe, days[0], days[-1]).tail(rows)
    lines = [
        f"{symbol} {timeframe.value}, last {bars.height} bar(s)",
        "",
        "| ts (UTC) | open | high | low | close | volume | provider |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['ts']:%Y-%m-%d %H:%M} | {r['open']:g} | {r['high']:g} | {r['low']:g} "
        f"| {r['close']:g} | {r['volume']} | {r['provider']} |"
        for r in bars.iter_rows(named=True)
    ]
    return dg.MetadataValue.md("\n".join(lines))
