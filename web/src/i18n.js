// English is the key; Russian is looked up. The language comes from the browser unless the user
// picked one (kept in localStorage).
import { useEffect, useState } from 'preact/hooks';

const RU = {
  'Servers': 'Серверы', 'Fleet': 'Парк серверов', 'Server': 'Сервер', 'Database': 'База данных', 'Databases': 'Базы данных',
  'Activity': 'Активность', 'Statements': 'Запросы', 'Replication': 'Репликация', 'Wraparound': 'Wraparound',
  'Users': 'Пользователи', 'SSH keys': 'SSH-ключи', 'Audit': 'Аудит', 'Settings': 'Настройки', 'System log': 'Системный журнал',
  'Log in': 'Войти', 'Log out': 'Выйти', 'Login': 'Логин', 'Password': 'Пароль', 'Status': 'Статус', 'Version': 'Версия',
  'Uptime': 'Аптайм', 'Connections': 'Подключения', 'Disk': 'Диск', 'Data age': 'Возраст данных', 'TPS': 'TPS',
  'Search': 'Поиск', 'All': 'Все', 'up': 'доступен', 'down': 'недоступен', 'disabled': 'отключён', 'pending': 'ожидание',
  'Name': 'Имя', 'Size': 'Размер', 'Growth 24 h': 'Рост 24 ч', 'Growth 7 d': 'Рост 7 д', 'Growth 30 d': 'Рост 30 д', 'dropped': 'удалена',
  'Transactions': 'Транзакции', 'Commits': 'Коммиты', 'Rollbacks': 'Откаты', 'Sessions by state': 'Сессии по состояниям',
  'Cache hit ratio': 'Попадания в кэш', 'Database sizes': 'Размеры баз', 'Availability': 'Доступность',
  'Checkpoints': 'Контрольные точки', 'WAL': 'WAL', 'Replication lag': 'Отставание репликации',
  'From': 'С', 'To': 'По', 'Apply': 'Применить', 'Refresh': 'Обновить', 'Cancel': 'Отменить', 'Terminate': 'Завершить',
  'Cancel query': 'Отменить запрос', 'Terminate session': 'Завершить сессию', 'Confirm': 'Подтвердить', 'Close': 'Закрыть',
  'Lock waits': 'Ожидания блокировок', 'No lock waits': 'Ожиданий блокировок нет', 'Sessions': 'Сессии', 'State': 'Состояние',
  'User': 'Пользователь', 'Application': 'Приложение', 'Client': 'Клиент', 'Duration': 'Длительность', 'Query': 'Запрос', 'Wait': 'Ожидание',
  'Min. duration, s': 'Мин. длительность, с', 'Hide pgmon': 'Скрыть pgmon', 'Calls': 'Вызовы', 'Total time': 'Общее время',
  'Mean time': 'Среднее время', 'Rows': 'Строки', 'Share': 'Доля', 'Standbys': 'Реплики', 'Slots': 'Слоты', 'Role': 'Роль',
  'XID age': 'Возраст XID', 'MXID age': 'Возраст MXID', 'Used': 'Использовано', 'Xmin holders': 'Держатели xmin',
  'Add server': 'Добавить сервер', 'Edit': 'Изменить', 'Delete': 'Удалить', 'Save': 'Сохранить', 'Test connection': 'Проверить подключение',
  'Test SSH': 'Проверить SSH', 'Reset host key': 'Сбросить ключ хоста', 'Host': 'Хост', 'Port': 'Порт', 'Description': 'Описание',
  'Generate': 'Создать', 'Import': 'Импортировать', 'Download': 'Скачать', 'Fingerprint': 'Отпечаток', 'Type': 'Тип',
  'Add user': 'Добавить пользователя', 'Email': 'Email', 'Active': 'Активен', 'Created': 'Создан', 'Last login': 'Последний вход',
  'Time': 'Время', 'Event': 'Событие', 'Details': 'Подробности', 'Level': 'Уровень', 'Source': 'Источник', 'Message': 'Сообщение',
  'Saved': 'Сохранено', 'Loading…': 'Загрузка…', 'No data in this range': 'Нет данных за этот период', 'unreachable': 'недоступен',
  'Language': 'Язык', 'Theme follows the system': 'Тема как в системе', 'Back to fleet': 'К списку серверов',
  'Last hour': 'Час', '6 hours': '6 часов', '24 hours': '24 часа', '7 days': '7 дней', '30 days': '30 дней', '1 year': 'Год',
  'Wrong login or password': 'Неверный логин или пароль', 'Session expired, log in again': 'Сессия истекла, войдите снова',
  'Are you sure?': 'Вы уверены?', 'Private key': 'Закрытый ключ', 'Passphrase': 'Парольная фраза', 'Key type': 'Тип ключа',
  'SSH user': 'Пользователь SSH', 'SSH port': 'Порт SSH', 'SSH key': 'SSH-ключ', 'none': 'нет', 'Enabled': 'Включён',
  'Progress': 'Прогресс', 'Backend type': 'Тип процесса', 'blocked by': 'заблокирован', 'Current LSN': 'Текущий LSN',
  'Retained WAL': 'Удерживаемый WAL', 'Lag': 'Отставание', 'Sync': 'Синхронность', 'Primary': 'Основной', 'Standby': 'Реплика',
  'Not a standby, no standbys, no slots': 'Не реплика, реплик и слотов нет', 'Oldest xmin': 'Старейший xmin',
  'Page not found': 'Страница не найдена', 'Servers used by this key': 'Серверы с этим ключом', 'Filter': 'Фильтр',
  'sessions': 'сессий', 'of': 'из', 'Refreshes every': 'Обновляется каждые', 'Admin': 'Администрирование',
  'Statements need pg_stat_statements on the server': 'Нужно расширение pg_stat_statements на сервере',
  'Time range': 'Период', 'Sessions (avg)': 'Сессии (средн.)', 'Waiting': 'Ожидают', 'Longest transaction': 'Самая долгая транзакция',
  'Checkpoints per hour': 'Контрольных точек в час', 'WAL generated': 'Сгенерировано WAL', 'Free': 'Свободно', 'Total': 'Всего',
};

const KEY = 'pgmon.lang';
let lang = pick();
const subs = new Set();

function pick() {
  try {
    const saved = localStorage.getItem(KEY);
    if (saved === 'en' || saved === 'ru') return saved;
  } catch {}
  const nav = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
  return nav.toLowerCase().startsWith('ru') ? 'ru' : 'en';
}

export function t(s) {
  return lang === 'ru' ? RU[s] || s : s;
}

export function getLang() {
  return lang;
}

export function setLang(l) {
  lang = l;
  try {
    localStorage.setItem(KEY, l);
  } catch {}
  document.documentElement.lang = l;
  for (const f of subs) f(l);
}

/** Re-renders the caller when the language changes. */
export function useLang() {
  const [l, set] = useState(lang);
  useEffect(() => {
    subs.add(set);
    return () => subs.delete(set);
  }, []);
  return l;
}
