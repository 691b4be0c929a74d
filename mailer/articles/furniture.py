"""Page furniture told by its shape and wording: bylines, datelines, reading times,
breadcrumbs and navigation, captions, cookie banners, share lines, sign-ups, teasers, paywalls
and copyright lines, in English, French, German and Spanish (and often others, by shape).

These are features for the classifier in ``articles.classify``, not a list that decides alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailer.articles.names import (
    BYLINE_START_RE,
    byline_name,
    leading_name,
    name_with_role,
)
from mailer.articles.words import Lazy, is_sentence, words_of, wordset

# Furniture kinds. "Inline" furniture sits inside a story without ending it (an advertisement,
# a caption, a "Read more: ..." teaser); "end" furniture closes the story (share lines,
# related links, comments, copyright, paywall).
INLINE = frozenset(
    {"ad", "caption", "teaser", "newsletter", "appeal", "user", "hint", "disclosure", "clock"}
)
END = frozenset({"share", "related", "comments", "copyright", "paywall", "tags", "about"})

_I = re.IGNORECASE


_SEP_RE = re.compile(r"\s*[|•·»›>]\s*|\s+/\s+")
_NAV_WORDS = wordset(
    """home news sport sports business culture opinion politics world local weather video videos
    podcasts podcast contact about search menu login subscribe lifestyle travel tech technology
    science health entertainment arts music film books food money economy environment education
    uk us europe region community events jobs shop newsletters latest live more blog archive
    accueil actualités actualité politique économie monde société sport sports culture régions
    rechercher connexion startseite nachrichten politik wirtschaft kultur panorama regional
    suche anmelden inicio noticias política economía deportes cultura sociedad mundo buscar
    opinión transport transportation council services"""
)
_SOCIAL_WORDS = wordset(
    """facebook twitter x linkedin whatsapp reddit email e-mail mail print copy link pinterest
    telegram messenger bluesky threads instagram youtube tiktok flipboard mastodon sms imprimer
    drucken imprimir courriel correo share"""
)

_SKIP_RE = Lazy(
    r"(skip|jump) to (the )?(main )?(content|navigation|article)|skip navigation"
    r"|aller au contenu|passer au contenu|(direkt )?zum (haupt)?inhalt|ir al contenido"
    r"|saltar al contenido",
    _I,
)
_MENU_RE = Lazy(
    r"(main |open |close )?menu|menú|close|search|log ?in|log ?out|sign ?in|sign ?up|register"
    r"|toggle navigation|navigation|back to top|listen( to this (article|story|page))?|home"
    r"|accueil|rechercher|recherche|se connecter|connexion|fermer|suche|anmelden|startseite"
    r"|schließen|buscar|inicio|iniciar sesión|cerrar|haut de page|nach oben|volver arriba"
    r"|print|imprimer|drucken|imprimir|subscribe|s'abonner|abonnieren|suscr[ií]b[ea]te"
    r"|dark mode|light mode|sections|all sections|topics|more|read later|save( for later)?"
    r"|lire plus tard|sp[äa]ter lesen|merken|leer m[áa]s tarde|guardar|follow|suivre|folgen"
    r"|seguir|open in app|write|for immediate release|(press|news|media) release"
    r"|communiqu[ée] de presse|pressemitteilung|(nota|comunicado) de prensa",
    _I,
)
_AD_RE = Lazy(
    r"advertisement|advertising|ad|sponsored( content| post)?|paid (post|content)|promoted"
    r"|partner content|anzeige|werbung|publicit[ée]|publicidad|skip (the )?advertisement"
    r"|(the )?(story|article|text) continues (below|after)( (this|the) (advertisement|ad))?"
    r"|continue reading( (the )?(main )?story)?( below)?"
    r"|la suite (de l'article )?après (cette |la )?publicit[ée]|weiter nach der anzeige"
    r"|(el )?art[íi]culo contin[úu]a (despu[ée]s|tras) (de )?la publicidad",
    _I,
)
_READTIME_RE = Lazy(
    r"\b\d{1,3}\s*-?\s*(min(ute)?s?|minuten|minutos|mn)\.?\s*"
    r"(read|de lecture|lesezeit|lesedauer|lesen|de lectura|lectura)\b"
    r"|\b(reading time|read time|temps de lecture|dur[ée]e de lecture|lesezeit|lesedauer"
    r"|tiempo de lectura|lectura)\s*:?\s*(ca\.?\s*|environ\s*)?\d{1,3}\s*(min|minute|minuten"
    r"|minutos)"
    r"|\blecture\s*:?\s*\d{1,3}\s*min",
    _I,
)
_COOKIE_WORD_RE = Lazy(r"\bcookies?\b", _I)
_CONSENT_RE = Lazy(
    r"\b(accept|consent|agree|privacy|preferences|settings|reject|manage|we use|uses|tracking"
    r"|accepter|acceptez|consentement|utilis|param[éè]tr|refuser|g[ée]rer|traceurs|confidentialit"
    r"|akzeptier|zustimm|einwillig|einstellung|ablehnen|verwende|datenschutz|nutzt|nutzen"
    r"|aceptar|aceptas|acepta|rechazar|configur|consentimiento|utiliza|privacidad|pol[íi]tica)",
    _I,
)
_CONSENT_BUTTON_RE = Lazy(
    r"((accept|reject|allow|refuse|deny|decline)( all| necessary| essential)?( cookies)?"
    r"|manage (cookies|preferences|settings|options)|cookie (settings|preferences|policy)"
    r"|(tout |)accepter( et fermer)?|tout refuser|continuer sans accepter|personnaliser"
    r"|alle akzeptieren|akzeptieren|alle ablehnen|einstellungen"
    r"|aceptar( todo| todas| cookies)?|rechazar( todo| todas)?|configurar)",
    _I,
)
_SHARE_RE = Lazy(
    r"(share|share (this|on|via|the|article|story|page|post|it)\b.*"
    r"|partager( (cet|l')article| sur .*| cette page)?|teilen( sie)?( diesen artikel| auf .*)?"
    r"|artikel teilen|compartir( en .*| este art[íi]culo| esta noticia)?"
    r"|follow us( on .*)?|suivez-nous( sur .*)?|folgen sie uns( auf .*)?|s[íi]guenos( en .*)?"
    r"|copy link|copier le lien|link kopieren|copiar enlace|(send|e-?mail|forward) (this|it)"
    r" to a friend|e-?mail this( article| story| page)?|print this( article| story| page)?"
    r"|(tweet|pin|save|bookmark)( this)?( article| story| page| post)?"
    r"|(gift|give) (this )?article|share full article)"
    r"\s*:?",
    _I,
)
_NEWSLETTER_RE = Lazy(
    r"\bnewsletters?\b.{0,80}\b(sign|subscri|inscri|abonn|anmeld|suscri|get|receive|recevez"
    r"|erhalten|recibe|deliver|inbox)"
    r"|\b(sign up|subscribe|register|inscrivez-vous|abonnez-vous|melden sie sich|abonnieren sie"
    r"|suscr[íi]bete|reg[íi]strate)\b.{0,80}\b(newsletter|briefing|bulletin|e-?mails?|updates"
    r"|digest|bolet[íi]n|lettre d'information|inbox)"
    r"|^(sign up|subscribe)( now| today| for free| here)?[.!]?$"
    r"|^(get|receive) (our|the) .{0,40}(newsletter|briefing|e-?mails?)"
    r"|\bsubscribe (for free|now|today|here)\b|\b(receive|get) new posts\b"
    r"|\bthanks for reading\b.{0,80}\bsubscri",
    _I,
)
_RELATED_RE = Lazy(
    r"(related( stories| articles| links| content| topics| coverage| reading| news)?"
    r"|more (stories|news|from .{1,40}|on this( story| topic)?|like this|in .{1,30})"
    r"|most (read|popular|viewed|shared)|top stories|recommended( for you| reading)?"
    r"|you (may|might) (also )?(like|enjoy)|also in the news|trending( now)?|popular( now)?"
    r"|what to read next|read (more|next)|see also|further reading"
    r"|les plus lus|sur le m[êe]me sujet|dans la m[êe]me rubrique|[àa] lire aussi|lire aussi"
    r"|voir aussi|nos articles|meistgelesen|mehr zum thema|das k[öo]nnte sie (auch )?interessieren"
    r"|auch interessant|weitere artikel|lo m[áa]s le[íi]do|noticias relacionadas|m[áa]s noticias"
    r"|te puede interesar|lea tambi[ée]n|lee tambi[ée]n|ver tambi[ée]n|m[áa]s informaci[óo]n)"
    r"\s*:?",
    _I,
)
_TEASER_RE = Lazy(
    r"(read more|read next|read also|also read|see also|related|more|lire aussi|[àa] lire aussi"
    r"|lire la suite|voir aussi|lesen sie auch|mehr zum thema|weiterlesen|auch interessant"
    r"|lea tambi[ée]n|lee tambi[ée]n|leer m[áa]s|ver tambi[ée]n|te puede interesar)\s*[:>»›|–—-]",
    _I,
)
_PAYWALL_RE = Lazy(
    r"(subscribe|sign up|register|log ?in|sign in) (now )?to (continue|read|keep reading|unlock"
    r"|access)|(this|the) (article|story|content|piece) is (only )?(for|available (only )?to"
    r"|reserved for|exclusive to) (our )?(paying )?(subscribers|members)|already a (subscriber"
    r"|member)|exclusive(ly)? (to|for) subscribers|subscribers only|for subscribers"
    r"|unlock (this|the|full) (article|story)|you('ve| have) (reached|read|\d+) .{0,30}articles?"
    r"|become a (member|subscriber)|start your (free )?trial|r[ée]serv[ée] aux abonn[ée]s"
    r"|article est r[ée]serv[ée]|d[ée]j[àa] abonn[ée]|abonnez-vous pour (lire|continuer)"
    r"|r[ée]serv[ée]e? aux abonn[ée]s|il vous reste \d+ ?% de cet article"
    r"|you have \d+ ?% of this article|(of|from) this (article|story) (left|remaining)"
    r"|nur f[üu]r abonnenten|(jetzt|hier) abonnieren|bereits abonnent|weiterlesen mit"
    r"|exklusiv f[üu]r abonnenten|exclusivo para suscriptores|ya eres suscriptor"
    r"|suscr[íi]bete para (seguir|leer|continuar)|s[óo]lo para suscriptores",
    _I,
)
_COPYRIGHT_RE = Lazy(
    r"©|\(c\)\s*\d{4}|\bcopyright\b|all rights reserved|tous droits r[ée]serv[ée]s"
    r"|alle rechte vorbehalten|todos los derechos reservados",
    _I,
)
_COMMENTS_RE = Lazy(
    r"((\d+\s+)?(comments?|responses?|replies)|(leave|post|add|write) a (comment|reply|response)"
    r"|join the (conversation|discussion)|(show|view|read) (\d+ )?comments|commentaires?|r[ée]agir"
    r"|laisser un commentaire|kommentare?|kommentieren|comentarios?|deja (un|tu) comentario)"
    r"\s*(\(\d+\))?\s*:?",
    _I,
)
_TAGS_RE = Lazy(
    r"(tags?|topics?|filed under|posted in|categories|category|mots[- ]cl[ée]s|th[èe]mes?"
    r"|schlagw[öo]rter|themen|etiquetas|temas)\s*:",
    _I,
)
_ABOUT_RE = Lazy(
    r"(about (us|the author|the authors|the publisher|this (site|newsletter|blog))"
    r"|[àa] propos( de l'auteur| de nous)?|qui sommes-nous|[üu]ber (uns|den autor|die autorin)"
    r"|sobre (nosotros|el autor|la autora)|qui[ée]nes somos)\b",
    _I,
)
# The label of a list that stands before a story: key points, a table of contents.
_LABEL_RE = Lazy(
    r"(key (points|events|facts|takeaways)|highlights|at a glance|in (brief|short|this article)"
    r"|what you need to know|(table of )?contents|on this page|jump to|quick links"
    r"|l'essentiel|en bref|sommaire|dans cet article|das wichtigste( in k[üu]rze)?|auf einen"
    r" blick|inhalt(sverzeichnis)?|in diesem artikel|puntos clave|claves|en resumen|[íi]ndice"
    r"|en este art[íi]culo)\s*:?",
    _I,
)
_DISCLOSURE_RE = Lazy(
    r"(this (post|article|page|story) (may )?contains? affiliate links|affiliate (links?"
    r"|disclosure)|we may earn (a )?(small )?commission|as an amazon associate"
    r"|(see|read) (my|our) (full )?disclosure)",
    _I,
)
# "09:12 Power cut to 40,000 homes", "10.15am: Trains cancelled": a live page's entry time.
_CLOCK_RE = Lazy(r"\d{1,2}[:.]\d{2}\s*([ap]\.?m\.?)?(\s*(gmt|bst|cet|cest|utc|et))?\b\W", _I)
_APPEAL_RE = Lazy(
    r"(support (our|independent|local|quality) (journalism|reporting|newsroom)|donate( now)?\b"
    r"|make a (donation|contribution)|soutenez|unterst[üu]tzen sie|apoya (a|nuestro))",
    _I,
)
CREDIT_RE = Lazy(
    r"\(?((additional )?reporting|writing|editing|edited|compiled|reporting and writing"
    r"|r[ée]daction|mitarbeit|con informaci[óo]n de|with reporting)( by)?\s*[:\s]"
    r"|a version of this (article|story) (appears|appeared) in print",
    _I,
)
_CAPTION_START_RE = Lazy(
    r"[\[(]?\s*(photo(graph)?s?|image|picture|pictured|caption|illustration|graphic|credit"
    r"|fotos?|bild(er)?|imagen|cr[ée]dits?( photo)?|l[ée]gende|video|vid[ée]o)"
    r"( caption| source| credit)?\s*(:|,|by\b|credit\b|courtesy\b|©|\|)",
    _I,
)
_CAPTION_END_RE = Lazy(
    r"(\b(getty images|ap photo|reuters|afp|shutterstock|istock|alamy|pa media|pa wire|dpa"
    r"|efe|epa|bloomberg|picture alliance)\b|\b(photo(graph(ie|y)?)?s?|pictures?|pics?"
    r"|fotos?|fotograf[íi]as?|bild(er)?|images?|imagen|cr[ée]dits?( photo)?|photo credit"
    r"|cr[ée]dito)\s*:\s*[^.]{1,80}|[.!?|(]\s*(photo(graph)?|picture|pic|image)s?\s+(by"
    r"|courtesy( of)?)\s+[^.]{1,80})[\s)\].]*$",
    _I,
)
_BY_RE = Lazy(r"\b(by|par|von|por|door|di|af|av)\s+", _I)
_MONTHS = (
    r"jan(uary|vier|uar|\.)?|feb(ruary|ruar|\.)?|f[ée]v(rier|\.)?|mar(ch|s|\.)?|m[äa]rz"
    r"|apr(il|\.)?|avr(il|\.)?|may|mai|jun(e|i|\.)?|juin|jul(y|i|\.)?|juil(let|\.)?"
    r"|aug(ust|\.)?|ao[ûu]t|sep(t(ember|embre|\.)?|\.)?|oct(ober|obre|\.)?|okt(ober|\.)?"
    r"|nov(ember|embre|\.)?|dec(ember|\.)?|d[ée]c(embre|\.)?|dez(ember|\.)?"
    r"|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre"
    r"|noviembre|diciembre|maart|mei|augustus|gennaio|febbraio|aprile|maggio|giugno|luglio"
    r"|settembre|ottobre|dicembre|janeiro|fevereiro|mar[çc]o|maio|junho|julho|setembro"
    r"|outubro|novembro|dezembro"
)
DATEISH_RE = Lazy(
    r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b"
    rf"|\b\d{{1,2}}(st|nd|rd|th|er|º|\.)?\s+(de\s+)?({_MONTHS})\b"
    rf"|\b({_MONTHS})\s+\d{{1,2}}(st|nd|rd|th)?,?\s+\d{{4}}\b",
    _I,
)
_STAMP_RE = Lazy(
    r"(last )?(published|updated|posted|modified|publi[ée]e?|mis [àa] jour|ver[öo]ffentlicht"
    r"|aktualisiert|stand|publicado|actualizado)( on| le| am| el)?\s*:?\s*\d{1,2}[:.h]\d{2}\b",
    _I,
)
# "5 hours ago", "il y a 3 heures", "vor 2 Stunden", "hace 3 horas", "Yesterday at 10:15":
# a time the page was seen, never a date to read.
_RELATIVE_RE = Lazy(
    r"\b(\d+|an?|one|two|three|few)\s+(seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?"
    r"|months?|years?)\s+ago\b|\bil y a\s+\d+\s*(min|minutes?|h|heures?|jours?|semaines?|mois"
    r"|ans?)\b|\bvor\s+\d+\s+(minuten|stunden|tagen|wochen|monaten|jahren)\b"
    r"|\bhace\s+\d+\s+(minutos?|horas?|d[íi]as?|semanas?|meses|años?)\b"
    r"|^((last )?updated:?\s+|published:?\s+)?(just now|today|yesterday|aujourd'hui|hier|heute"
    r"|gestern|hoy|ayer)\b",
    _I,
)
_MINUTE_WORDS = wordset("min mins minute minutes minuten minutos minuti mn")
_READ_WORDS = wordset("read reading lecture lesezeit lesedauer lesen lectura leer lettura leestijd")
_DATE_WORDS = wordset(
    """published updated posted last modified on at am pm a.m p.m gmt bst utc cet cest est edt
    pst pdt z the of publié publiée le mis à jour à h modifié veröffentlicht aktualisiert am um
    uhr stand zuletzt publicado actualizado el de a las y del en"""
)


def furniture_kind(head: str, words: list[str], hints: Sequence[re.Pattern[str]]) -> str | None:
    """The kind of page furniture an item is, by its shape and wording; None for none."""
    n = len(words)
    line = head.strip()
    short = n <= 12
    if short:
        if _SKIP_RE.match(line):
            return "skip"
        if _MENU_RE.fullmatch(line.rstrip(" :")):
            return "nav"
        if _AD_RE.fullmatch(line.strip(" -–—:.[]()")):
            return "ad"
        if _SHARE_RE.fullmatch(line.rstrip(".")):
            return "share"
        if _RELATED_RE.fullmatch(line.rstrip(".")):
            return "related"
        if _COMMENTS_RE.fullmatch(line.rstrip(".")):
            return "comments"
        if _CONSENT_BUTTON_RE.fullmatch(line.rstrip(".")):
            return "cookie"
        if _LABEL_RE.fullmatch(line.rstrip(".")):
            return "label"
    if n <= 25:
        if byline_name(line) or name_with_role(line) or dated_byline(line):
            return "byline"
        if _READTIME_RE.search(line) or _is_reading_time(words):
            return "readtime"
        if _is_dateline(line, words):
            return "dateline"
        if CREDIT_RE.match(line):
            return "credit"
        if _CAPTION_START_RE.match(line) or (_CAPTION_END_RE.search(line) and n <= 40):
            return "caption"
        if _TAGS_RE.match(line):
            return "tags"
        if _TEASER_RE.match(line):
            return "teaser"
        if _CLOCK_RE.match(line) and not is_sentence(line):
            return "clock"
        kind = _nav_kind(line.split(), line)
        if kind is not None:
            return kind
    elif _CAPTION_START_RE.match(line) and not is_sentence(line):
        return "caption"
    if _COOKIE_WORD_RE.search(line) and _CONSENT_RE.search(line):
        return "cookie"
    if _PAYWALL_RE.search(line):
        return "paywall"
    if _NEWSLETTER_RE.search(line):
        return "newsletter"
    if n <= 60 and _COPYRIGHT_RE.search(line):
        return "copyright"
    if _ABOUT_RE.match(line):
        return "about"
    if n <= 40 and _DISCLOSURE_RE.search(line):
        return "disclosure"
    if n <= 40 and _APPEAL_RE.search(line):
        return "appeal"
    if short and any(p.match(line) for p in hints):
        return "hint"
    return None


def _is_reading_time(words: list[str]) -> bool:
    """``Lectura de 4 minutos``, ``4 min read``, ``Lesezeit 3 Minuten``: a number, a minute
    and a reading, and little else."""
    lowered = [w.lower().rstrip(".") for w in words]
    return (
        len(lowered) <= 8
        and any(w.isdigit() for w in lowered)
        and any(w in _MINUTE_WORDS for w in lowered)
        and any(w in _READ_WORDS for w in lowered)
    )


def _nav_kind(tokens: list[str], line: str) -> str | None:
    """``Home > News > Transport`` (a breadcrumb), ``Home | News | Sport`` or
    ``News Sport Business Culture`` (navigation), ``Facebook Twitter Email`` (share)."""
    if not tokens or len(line) > 300:
        return None
    bare = [t.strip("|•·»>›/~–—-,:()[]").lower() for t in tokens]
    bare = [t for t in bare if t]
    if len(bare) >= 2 and sum(t in _SOCIAL_WORDS for t in bare) >= 0.7 * len(bare):
        return "share"
    parts = [p for p in _SEP_RE.split(line) if p.strip()]
    if len(parts) >= 2 and not line.endswith(".") and all(len(p.split()) <= 4 for p in parts):
        if re.search(r"[>›»/]", line):
            return "breadcrumb"
        return "nav"
    if len(parts) >= 3 and all(len(p.split()) <= 5 for p in parts) and not is_sentence(line):
        return "nav"
    if len(bare) >= 3 and sum(t in _NAV_WORDS for t in bare) >= 0.6 * len(bare):
        return "nav"
    return None


def dated_byline(line: str) -> str | None:
    """The name in ``Posted on March 2, 2026 by Gwen Pritchard``: a date, then "by" a name."""
    date = DATEISH_RE.search(line)
    if date is None:
        return None
    by = _BY_RE.compiled.search(line, date.end())
    if by is None or by.start() - date.end() > 20:
        return None
    name = leading_name(line[by.end() :], whole=False)
    return name if name is not None and len(name.split()) >= 2 else None


def is_nav(text: str) -> bool:
    """Whether a few words name a site's section or service ("BBC News", "Local Sport")."""
    return any(w.lower() in _NAV_WORDS for w in words_of(text))


def _is_dateline(line: str, words: list[str]) -> bool:
    """``Published: 3 March 2025``, ``Updated Nov. 20, 2026 at 10:15 am GMT``,
    ``Publié le 12 mars 2025``, ``Updated 9:15 a.m. ET``: a date and little else."""
    if len(words) <= 8 and (_STAMP_RE.match(line) or _RELATIVE_RE.search(line)):
        return True
    match = DATEISH_RE.search(line)
    if match is None or len(words) > 16:
        return False
    if is_sentence(line) and len(words) > 8:
        return False
    rest = words_of(line[: match.start()] + " " + line[match.end() :])
    others = [
        w
        for w in rest
        if w.lower() not in _DATE_WORDS and not w.isdigit() and not DATEISH_RE.fullmatch(w)
    ]
    return len(others) <= max(3, len(rest) // 2)


def is_marker(line: str) -> bool:
    """Lines that stand alone even inside a wrapped paragraph: obvious page furniture."""
    if len(line) > 160:
        return False
    return bool(
        _SKIP_RE.match(line)
        or (BYLINE_START_RE.match(line) and byline_name(line) is not None)
        or _READTIME_RE.search(line)
        or _CAPTION_START_RE.match(line)
        or _SHARE_RE.fullmatch(line)
        or _nav_kind(line.split(), line) is not None
    )
