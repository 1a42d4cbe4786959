"""Plotting helpers, below every user of them: `data` (sample grids, augmentation previews,
closest pairs, latent walks: the data sets and their quality) and `results` (learning curves,
confusion matrices, accuracy and sweep plots). Functions over arrays and numbers that write a
PNG; they import matplotlib on first use and nothing else of synthaug."""
