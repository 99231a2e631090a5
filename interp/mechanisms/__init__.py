"""Tools for the mechanisms known from the literature, each returning a result object.

- ``dla``: direct logit attribution of an answer's logit difference to every component and head.
- ``attention``: a head's attention pattern, and the attention from one position to others.
- ``induction``: induction heads (repeated random tokens) and mean ablation of heads.
- ``ioi``: indirect object identification prompt sets (ABBA / BABA, ABC corruption) and their measures.
- ``norms``: an activation store's overview, the norm of every prompt's activation per layer (``site_norms``).

Import the module you need (``from interp.mechanisms.dla import direct_logit_attribution``); the
package imports none of them, so one tool does not load the others.
"""
