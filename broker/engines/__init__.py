"""Engine adapters: the only code that imports Playwright or Camoufox."""
