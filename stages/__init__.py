"""One module per DVC stage: glue that loads typed params, calls pipeline/, writes outs atomically."""
