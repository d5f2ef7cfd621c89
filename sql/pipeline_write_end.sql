-- Before a DayWriter's connection goes back to the pool: later users of it may be hand edits.
RESET kline.pipeline_write;
