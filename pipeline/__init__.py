"""synthaug's library: typed config, data sources, storage, classifiers, training, metrics.

Nothing here reads params.yaml or argv; the stages/ glue does that and passes typed configs,
devices and seeds in.
"""
