"""How good a synthetic set is: `assess` (one set's scores, put together from `features`
(domain and ImageNet feature extractors), `distribution` (FID/KID, precision/recall/density/
coverage), `memorisation` (near copies of training images) and `usefulness` (CAS, judge
agreement, the gate)), `run` (the quality stage's sets scored side by side), `config` (the
`quality` section and the reference sets)."""
