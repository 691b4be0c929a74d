"""The article corpus: pages written in the shapes of real sites, and the score of reading them.

Each ``.txt`` and ``.html`` file here is one page, as people have them (scraped text, saved web
pages); ``expected.json`` says what a careful reader finds in it. ``score.py`` reads every page
with ``mailer.articles.load_article`` and scores it; ``tests/test_corpus.py`` holds the figures
at the floors in ``floor.json`` and ``bench/bench_articles.py`` prints them.
"""
